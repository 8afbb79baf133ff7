"""Airflow's Task Execution API in a child process, for a night run by `lake run`.

A module of its own, importing little: the child imports it first thing, and every module
it pulls in (pandas, the lake's steps) would delay the API it has to serve before the
night's first task can start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time as clock
from collections.abc import Iterator
from contextlib import contextmanager

from catalog.errors import LakeError


class _ExecutionApi:
    """Airflow's Task Execution API in a child process on a loopback port, for one night.

    Airflow 3's executors run each task in a worker process that reports to this API (the
    api-server's ``/execution`` app); ``dag.test(use_executor=True)`` starts none
    (apache/airflow#59074). A child of its own rather than a thread here: building the
    app's versioned routes costs ~4 s of CPU on its first request, which the child pays
    on the second core while this process loads the DAG and the task modules, and its
    request handling never waits for this process's GIL. Tokens are signed and checked
    with the installation's JWT secret, as between a scheduler and an api-server. The
    child listens on 127.0.0.1 only and exits when its stdin closes (this process ended).
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from etl.execution_api import serve_execution_api as s; s()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url: str | None = None

    def wait_ready(self) -> str:
        """Block until the child serves (warmed up); point this process's executor at it."""
        if self.url is None:
            line = self.process.stdout.readline().split()
            if len(line) != 2 or line[0] != "ready":
                raise LakeError("Airflow's execution API did not start (see Airflow's log)")
            self.url = line[1]
            os.environ[EXECUTION_API_VARIABLE] = self.url  # the executor's forked workers
        return self.url

    def close(self) -> None:
        """Stop the child: it holds no state worth a graceful shutdown (the night is over)."""
        self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def execution_api() -> Iterator[_ExecutionApi]:
    """Airflow's Task Execution API in a child process while the block runs."""
    saved = os.environ.get(EXECUTION_API_VARIABLE)
    api = _ExecutionApi()
    try:
        yield api
    finally:
        api.close()
        if saved is None:
            os.environ.pop(EXECUTION_API_VARIABLE, None)
        else:
            os.environ[EXECUTION_API_VARIABLE] = saved


def serve_execution_api() -> None:
    """The child's side: serve ``/execution``, say ``ready <url>`` once warm, stop on EOF."""
    import socket
    import urllib.request

    ready = os.fdopen(os.dup(1), "w")  # stdout is the parent's pipe: only "ready" goes there
    os.dup2(2, 1)  # whatever Airflow and uvicorn print goes where stderr goes (the log)
    import uvicorn
    from airflow.api_fastapi.app import create_app

    serve_current_api_versions_only()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/execution/"
    server = uvicorn.Server(
        uvicorn.Config(create_app(apps="execution"), log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            sys.exit(1)
        clock.sleep(0.02)
    with urllib.request.urlopen(f"{url}health", timeout=60) as answer:  # builds the routes
        answer.read()
    print("ready", url, file=ready, flush=True)
    sys.stdin.read()  # until the night is over (or its process gone)
    server.should_exit = True
    thread.join(timeout=10)


EXECUTION_API_VARIABLE = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"


def serve_current_api_versions_only() -> None:
    """Build the Task Execution API for the versions this installation's tasks speak.

    The app (Cadwyn) builds its routes for every API version Airflow ever released (nine in
    3.3) on its first request: 3.5 s of CPU, a fifth of the demo night. The night's only
    clients are this installation's Task SDK, which speaks the newest version. Kept: the
    newest versions down to the oldest whose changes restore a route the newest ones
    dropped (Cadwyn requires that), behind the next older one, unchanged; measured 1.1 s.
    Nothing is trimmed when the Task SDK speaks another version than the newest. Call it
    before the app is created (the API's child, or before ``dag.test()`` in-process).
    """
    from airflow.api_fastapi.execution_api import versions
    from airflow.sdk.api.datamodels._generated import API_VERSION
    from cadwyn import Version, VersionBundle
    from cadwyn.structure.endpoints import EndpointExistedInstruction

    every = versions.bundle
    if every.versions[0].value != API_VERSION or every.head_version.changes:
        return
    restoring = [
        index
        for index, version in enumerate(every.versions)
        for change in version.changes
        if any(
            isinstance(i, EndpointExistedInstruction) for i in change.alter_endpoint_instructions
        )
    ]
    kept = every.versions[: max(restoring, default=0) + 1]
    if len(kept) + 1 >= len(every.versions):
        return  # nothing to leave out (or done already)
    for version in kept:
        for change in version.changes:
            change._bound_version_bundle = None  # Cadwyn binds a change to one bundle
    versions.bundle = VersionBundle(
        every.head_version, *kept, Version(every.versions[len(kept)].value)
    )
