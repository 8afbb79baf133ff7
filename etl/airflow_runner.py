"""Run the nightly DAG in-process through Airflow (``dag.test()``), for people and tests.

Airflow reads its config when first imported, so :func:`airflow_environment` must be
applied before any ``airflow`` import; the CLI does that first thing.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from catalog.errors import LakeError
from catalog.files import OWNER_FILE_MODE, OWNER_ONLY_UMASK, new_owner_file, owner_only_dir
from etl.nightly import LAKE_TZ
from etl.settings import REPO_ROOT, SOURCE_POOL, LakeSettings

DAG_ID = "yimen_nightly"
SOURCE_POOL_SLOTS = 4


def airflow_environment(settings: LakeSettings) -> dict[str, str]:
    """Environment that points Airflow at the repo's airflow.cfg and this lake's var/."""
    airflow_var = settings.var / "airflow"
    return {
        "AIRFLOW_HOME": str(REPO_ROOT),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_var / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_var / "logs"),
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(
            {"connections_file_path": str(settings.departments_dir / "connections.json")}
        ),
    }


def apply_airflow_environment(settings: LakeSettings) -> None:
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(REPO_ROOT):
        raise LakeError("Airflow was imported before its environment was set")
    for variable, value in airflow_environment(settings).items():
        if variable == "AIRFLOW_HOME":
            os.environ[variable] = value  # the repo's airflow.cfg, whatever the shell says
        else:
            os.environ.setdefault(variable, value)  # a deployment's own settings win
    # Airflow's database, logs and secrets are the owner's alone, and so is what this
    # process writes from here on (the catalog database, the quality page, spill files)
    os.umask(OWNER_ONLY_UMASK)
    owner_only_dir(settings.var / "airflow")
    owner_only_dir(settings.var / "airflow" / "logs")
    # Scheduler, API server and workers must share these secrets (standalone runs them as
    # separate processes). One random value per installation, kept out of git and config.
    for variable, name, make in [
        ("AIRFLOW__API_AUTH__JWT_SECRET", "jwt_secret", _token),
        ("AIRFLOW__API__SECRET_KEY", "api_secret_key", _token),
        ("AIRFLOW__CORE__FERNET_KEY", "fernet_key", _fernet_key),  # encrypts stored secrets
    ]:
        if variable not in os.environ:
            os.environ[variable] = _installation_secret(settings.var / "airflow" / name, make)


def _token() -> str:
    return secrets.token_urlsafe(48)


def _fernet_key() -> str:
    """A key as ``cryptography.fernet.Fernet.generate_key()`` makes it: 32 random bytes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _installation_secret(path: Path, make: Callable[[], str] = _token) -> str:
    """A random secret created once and readable by its owner only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_FILE_MODE)
        with os.fdopen(fd, "w") as out:
            out.write(make())
    return path.read_text().strip()


def ensure_airflow_ready(settings: LakeSettings) -> None:
    """Migrate the metadata DB (once per Airflow version) and create the source pool.

    Call :func:`apply_airflow_environment` first: the migration runs in that environment.
    """
    import airflow

    marker = settings.var / "airflow" / f".migrated-{airflow.__version__}"
    if not marker.exists():
        done = subprocess.run(  # inherits the environment apply_airflow_environment set
            [sys.executable, "-m", "airflow", "db", "migrate"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise LakeError(f"`airflow db migrate` failed: {' '.join(tail)}")
        marker.touch()
    from airflow.models.pool import Pool

    if Pool.get_pool(SOURCE_POOL) is None:
        Pool.create_or_update_pool(
            SOURCE_POOL,
            SOURCE_POOL_SLOTS,
            "Concurrent reads against department systems",
            include_deferred=False,
        )


@dataclass(frozen=True)
class NightResult:
    ds: date
    run_id: str
    state: str
    failed_tasks: list[str]


def logical_date_for(ds: date) -> datetime:
    """The logical date whose night processes ``ds`` (02:00 Shanghai on that date)."""
    return datetime.combine(ds, time(2, 0), tzinfo=LAKE_TZ)


def run_night(
    settings: LakeSettings,
    ds: date,
    log_file: Path | None = None,
    show_progress: bool = False,
) -> NightResult:
    """Run the whole night for ``ds`` in-process with ``dag.test()``.

    Airflow's task logs go to ``log_file`` when given (the CLI keeps the terminal for
    progress and the summary), else to the console as usual. With ``show_progress`` every
    partition written and step failed is reported on the terminal as it happens.
    """
    ensure_airflow_ready(settings)
    from airflow.dag_processing.dagbag import DagBag

    with _output_to(log_file):
        bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    if bag.import_errors:
        path, error = next(iter(bag.import_errors.items()))
        raise LakeError(f"DAG file {path} does not import: {error.strip().splitlines()[-1]}")
    dag = bag.dags[DAG_ID]
    with (
        _output_to(log_file) as terminal,
        _NightWatcher(settings, terminal if show_progress else None),
    ):
        dag_run = dag.test(
            logical_date=logical_date_for(ds),
            run_conf={"ds": ds.isoformat(), "fail_fast": True},
        )
    failed = [
        ti.task_id
        for ti in dag_run.get_task_instances()
        if ti.state in {"failed", "upstream_failed"}
    ]
    return NightResult(ds, dag_run.run_id, str(dag_run.state), failed)


@contextmanager
def _output_to(log_file: Path | None) -> Iterator[Callable[[str], None]]:
    """Send this process's stdout/stderr (file descriptors, so Airflow's too) to a file.

    Yields a function that still writes a line to the terminal.
    """
    if log_file is None:
        yield print
        return
    owner_only_dir(log_file.parent)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(new_owner_file(log_file), "w") as out:  # what tasks print: owner-only
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield lambda line: os.write(saved[0], (line + "\n").encode())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class _NightWatcher:
    """While a night runs, tells ``say`` about each partition written and step failed."""

    def __init__(self, settings: LakeSettings, say: Callable[[str], None] | None) -> None:
        self.say = say
        self.stop = threading.Event()
        if say is not None:
            from catalog.store import CatalogStore

            self.store = CatalogStore(settings.catalog_url)
            self.seen_partition, self.seen_error = self.store.latest_ids()
            self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> _NightWatcher:
        if self.say is not None:
            self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.say is not None:
            self.stop.set()
            self.thread.join()
            self._report()

    def _watch(self) -> None:
        while not self.stop.wait(1.0):
            self._report()

    def _report(self) -> None:
        for part in self.store.partitions_after(self.seen_partition):
            self.seen_partition = part.id
            self.say(f"  {part.zone:15s} {part.dataset_id:36s} {part.rows:>10,} rows")
        for error in self.store.errors_after(self.seen_error):
            self.seen_error = error.id
            self.say(f"  FAILED {error.message}")


def default_demo_date() -> date:
    """Yesterday in Shanghai: the night that runs this morning."""
    return datetime.now(LAKE_TZ).date() - timedelta(days=1)
