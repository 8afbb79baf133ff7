"""Run the nightly DAG in-process through Airflow (``dag.test()``), for people and tests.

Airflow reads its config when first imported, so :func:`airflow_environment` must be
applied before any ``airflow`` import; the CLI does that first thing.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time as clock
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.errors import LakeError
from catalog.files import OWNER_FILE_MODE, OWNER_ONLY_UMASK, new_owner_file, owner_only_dir
from etl.execution_api import execution_api, serve_current_api_versions_only
from etl.nightly import IN_PROCESS_VARIABLE, LAKE_TZ
from etl.settings import REPO_ROOT, SOURCE_POOL, LakeSettings

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.executors.base_executor import BaseExecutor
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG

DAG_ID = "yimen_nightly"
SOURCE_POOL_SLOTS = 2  # as many as tasks run at once (airflow.cfg parallelism, two cores)


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
        database = _local_airflow_database(settings)
        template = AIRFLOW_TEMPLATES / f"airflow-{airflow.__version__}.db"
        if database is None or not copied_airflow_database(template, database):
            done = subprocess.run(  # inherits the environment apply_airflow_environment set
                [sys.executable, "-m", "airflow", "db", "migrate"],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
                raise LakeError(f"`airflow db migrate` failed: {' '.join(tail)}")
            if database is not None:
                copied_airflow_database(database, template)
        marker.touch()
    from airflow.models.pool import Pool

    pool = Pool.get_pool(SOURCE_POOL)
    if pool is None or pool.slots != SOURCE_POOL_SLOTS:
        Pool.create_or_update_pool(
            SOURCE_POOL,
            SOURCE_POOL_SLOTS,
            "Concurrent reads against department systems",
            include_deferred=False,
        )


# A night whose latest predecessor delivered fewer rows than this runs in-process: its
# tasks take a second or less each, and the executor's costs (a process per task, the
# execution API's child, its start-up) outweigh the second core. Measured on the demo
# night (40k records, on a busy machine): in-process 31-32 s wall and 19-20 s CPU,
# through the LocalExecutor 46-51 s and 27-29 s; at a million records the executor wins
# (decision 0015).
SMALL_NIGHT_ROWS = 200_000


def runs_concurrently(settings: LakeSettings) -> bool:
    """Whether `lake run` hands the night's tasks to the LocalExecutor (else in-process).

    Judged by the latest night recorded: the rows its extractions delivered. A lake with
    no night yet (a first night, the largest) runs concurrently.
    """
    from catalog.store import CatalogStore
    from etl.zones import RAW_SOURCES

    delivered = CatalogStore(settings.catalog_url).partitions(zone=RAW_SOURCES)
    if not delivered:
        return True
    latest = max(p.ds for p in delivered)
    return sum(p.rows for p in delivered if p.ds == latest) >= SMALL_NIGHT_ROWS


# Freshly migrated Airflow metadata databases, one per Airflow version, copied into each
# new lake of this checkout instead of migrating again (10-20 s on this machine: every
# bench workdir, test session and first demo paid it)
AIRFLOW_TEMPLATES = REPO_ROOT / "var" / "cache"


def _local_airflow_database(settings: LakeSettings) -> Path | None:
    """The lake's own SQLite metadata database, unless the deployment set another one."""
    own = airflow_environment(settings)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") != own:
        return None
    return Path(own.removeprefix("sqlite:///"))


def copied_airflow_database(source: Path, target: Path) -> bool:
    """Copy a quiescent SQLite database (no write-ahead log beside it) to a ``target`` that
    does not hold one yet, owner-only, in one rename; False when it cannot be done so."""
    wal = source.with_name(source.name + "-wal")
    if not source.is_file() or wal.exists() or (target.exists() and target.stat().st_size):
        return False
    owner_only_dir(target.parent)
    partial = target.with_name(f"{target.name}.tmp-{secrets.token_hex(6)}")
    with open(source, "rb") as data, open(new_owner_file(partial), "wb") as out:
        shutil.copyfileobj(data, out)
    os.replace(partial, target)
    return True


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
    parallel: bool = True,
) -> NightResult:
    """Run the whole night for ``ds`` with ``dag.test()``.

    ``parallel`` (the default) hands the tasks to Airflow's LocalExecutor, so independent
    tasks (one dataset's validation while the next is extracted) run at once, up to
    ``[core] parallelism`` (the machine's cores); otherwise each task runs in this process
    one after the other. Airflow's task logs go to ``log_file`` when given (the CLI keeps
    the terminal for progress and the summary), else to the console as usual. With
    ``show_progress`` every partition written and step failed is reported on the terminal
    as it happens.
    """
    started, cpu = clock.monotonic(), cpu_seconds()

    def phase(name: str) -> None:  # in Airflow's log: where the night's fixed costs go
        # CPU of this process and its finished children too: on a busy machine the wall
        # time stretches, the CPU time says what the night itself cost
        print(
            f"lake run: {name} after {clock.monotonic() - started:.1f} s "
            f"(CPU {cpu_seconds() - cpu:.1f} s)",
            flush=True,
        )

    with _output_to(log_file) as terminal, execution_api() if parallel else nullcontext() as api:
        # while the execution API warms up in its own process, this one migrates (first
        # run only), loads the DAG and then the modules every task will inherit. Not in a
        # thread beside the rest: two threads importing Airflow's models deadlock now and
        # then (one holds SQLAlchemy's mapper-configure mutex and waits for a module the
        # other is importing, which waits for that mutex), and imports hold the GIL anyway.
        # In-process, the tasks import what they use when they first use it: preloading
        # the whole list there cost the demo night 2.5-3 s of CPU (modules it never uses)
        ensure_airflow_ready(settings)
        phase("Airflow ready")
        bag = dag_bag(REPO_ROOT / "dags")
        dag = bag.dags[DAG_ID]
        phase("DAG loaded")
        if api is not None:
            _preload_task_modules()  # before the executor forks its workers from this process
            phase("task modules loaded")
            api.wait_ready()
            phase("execution API ready")
        conf = {"ds": ds.isoformat(), "fail_fast": True}
        with _NightWatcher(settings, terminal if show_progress else None):
            if parallel:
                dag_run = run_with_executor(bag, dag, logical_date_for(ds), conf, on_created=phase)
            else:  # the tasks' execution API is built in this process, lazily
                serve_current_api_versions_only()
                with _tasks_in_process():
                    dag_run = dag.test(logical_date=logical_date_for(ds), run_conf=conf)
        phase("DAG run done")
    phase("execution API stopped")
    failed = [
        ti.task_id
        for ti in dag_run.get_task_instances()
        if ti.state in {"failed", "upstream_failed"}
    ]
    return NightResult(ds, dag_run.run_id, str(dag_run.state), failed)


@contextmanager
def _tasks_in_process() -> Iterator[None]:
    """Tell the steps they run inside this process (``etl.nightly.IN_PROCESS_VARIABLE``)."""
    os.environ[IN_PROCESS_VARIABLE] = "1"
    try:
        yield
    finally:
        os.environ.pop(IN_PROCESS_VARIABLE, None)


def dag_bag(folder: Path) -> DagBag:
    """The DAG files of ``folder``, parsed once: the same bag is run and saved to Airflow's
    database as the ``dags-folder`` bundle (what the task processes load their DAG from)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder), bundle_path=folder, bundle_name=DAGS_BUNDLE)
    if bag.import_errors:
        path, error = next(iter(bag.import_errors.items()))
        raise LakeError(f"DAG file {path} does not import: {error.strip().splitlines()[-1]}")
    return bag


DAGS_BUNDLE = "dags-folder"  # Airflow's bundle for [core] dags_folder

# How often the night's loop looks for a task that changed state while it waits (a cheap
# query on Airflow's database), and the longest it waits without looking at everything
# (a retry's or a reschedule's date passing changes no state)
STATE_POLL_S = 0.05
LOOP_WAIT_S = 1.0


def run_with_executor(
    bag: DagBag,
    dag: DAG,
    logical_date: datetime,
    conf: dict,
    on_created: Callable[[str], None] | None = None,
) -> DagRun:
    """Run ``dag`` once for ``logical_date`` through the configured executor (the
    LocalExecutor): what ``dag.test(use_executor=True)`` does, reacting to a finished task
    as soon as Airflow's database records it instead of once a second (decision 0020).

    The same calls as ``Dag.test``: clear the date's task instances, save the bag to the
    database, get or create the run, then until the run ends let the run decide which
    tasks are ready (``DagRun.update_state``), queue them on the executor, heartbeat it and
    process its events. ``Dag.test`` sleeps a fixed second whenever no task is ready; here
    the loop waits until a task instance of the run changes state, the executor has a
    result or a free slot for a queued task, or at most :data:`LOOP_WAIT_S`.
    """
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.executors import workloads
    from airflow.executors.executor_loader import ExecutorLoader
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun, get_or_create_dagrun
    from airflow.sdk import timezone
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    session = settings.Session()
    dag.validate()
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    SerializedDAG.clear_dags(
        dags=[scheduler_dag], start_date=logical_date, end_date=logical_date, dag_run_state=False
    )
    DagBundlesManager().sync_bundles_to_db(session=session)
    session.commit()
    sync_bag_to_db(bag, DAGS_BUNDLE, None)  # the bag parsed once (Dag.test parses a second)
    scheduler_dag.on_success_callback = dag.on_success_callback  # as Dag.test keeps them
    scheduler_dag.on_failure_callback = dag.on_failure_callback
    run_after = timezone.utcnow()
    timetable = coerce_to_core_timetable(dag.timetable)
    dag_run: DagRun = get_or_create_dagrun(
        dag=scheduler_dag,
        start_date=logical_date,
        logical_date=logical_date,
        data_interval=timetable.infer_manual_data_interval(run_after=logical_date),
        run_after=run_after,
        run_id=DagRun.generate_run_id(
            run_type=DagRunType.MANUAL, logical_date=logical_date, run_after=run_after
        ),
        session=session,
        conf=conf,
        triggered_by=DagRunTriggeredByType.TEST,
        triggering_user_name="dag_test",
    )
    if on_created is not None:
        on_created("DAG run created")
    states = _RunStates(dag_run)
    executor = ExecutorLoader.get_default_executor()
    executor.start()
    try:
        while dag_run.state == DagRunState.RUNNING:
            seen = states.now()  # before this round: a change during it is not missed
            session.expire_all()
            ready, _ = dag_run.update_state(session=session)
            for ti in ready:
                if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                    ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
                ti.scheduled_dttm = timezone.utcnow()
            session.commit()
            scheduled = dag_run.get_task_instances(
                state=[TaskInstanceState.SCHEDULED], session=session
            )
            handed = dag_run.get_task_instances(
                state=[TaskInstanceState.QUEUED, TaskInstanceState.RUNNING], session=session
            )
            for ti in highest_first(scheduled, executor.parallelism - len(handed)):
                if executor.has_task(ti):
                    continue
                workload = workloads.ExecuteTask.make(
                    ti,
                    dag_rel_path=Path(dag.fileloc),
                    generator=executor.jwt_generator,
                    sentry_integration=executor.sentry_integration,
                    bundle_info=workloads.BundleInfo(name=DAGS_BUNDLE),
                )
                executor.queue_workload(workload, session=session)
                ti.state = TaskInstanceState.QUEUED
                session.commit()
            executor.heartbeat()
            session.expire_all()
            SchedulerJobRunner.process_executor_events(
                executor=executor, job_id=None, scheduler_dag_bag=DBDagBag(), session=session
            )
            session.commit()
            if dag_run.state == DagRunState.RUNNING:
                states.wait_for_change(seen, executor, LOOP_WAIT_S)
    finally:
        executor.end()
        session.close()
    return dag_run


def highest_first(ready: list, free_slots: int) -> list:
    """The ready task instances to hand the executor now: as many as it has free slots,
    the highest ``priority_weight`` first.

    The LocalExecutor's workers take what they are handed in order, and this Airflow's
    executor does not count the tasks it is running against its slots: every task handed
    over at once would run in the order it became ready, whatever its priority.
    """
    ordered = sorted(ready, key=lambda ti: -ti.priority_weight)  # stable: ties keep order
    return ordered[: max(free_slots, 0)]


class _RunStates:
    """The states of one DAG run's task instances, read from Airflow's database: a query
    cheap enough to repeat every :data:`STATE_POLL_S` while the loop waits."""

    def __init__(self, dag_run: DagRun) -> None:
        from airflow import settings
        from airflow.models.taskinstance import TaskInstance
        from sqlalchemy import func, select

        self.engine = settings.engine
        self.query = (
            select(TaskInstance.state, func.count())
            .where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
            .group_by(TaskInstance.state)
        )

    def now(self) -> set:
        with self.engine.connect() as connection:  # a fresh read: what others committed
            return set(connection.execute(self.query).all())

    def wait_for_change(self, seen: set, executor: BaseExecutor, longest: float) -> None:
        """Return when the states differ from ``seen``, the executor has a result to read
        or a queued task a free slot, or after ``longest`` seconds.

        A queued task with a free slot counts only after one poll interval: a task the
        executor holds back with a slot free (a try still running) must not make the loop
        spin."""
        deadline = clock.monotonic() + longest
        while clock.monotonic() < deadline:
            if _has_result(executor) or self.now() != seen:
                return
            clock.sleep(STATE_POLL_S)
            if executor.queued_tasks and executor.parallelism > len(executor.running):
                return


def _has_result(executor: BaseExecutor) -> bool:
    """A finished workload waiting to be read: reading it frees its slot."""
    results = getattr(executor, "result_queue", None)  # the LocalExecutor's
    return results is not None and not results.empty()


def cpu_seconds() -> float:
    """CPU time of this process and of its ended children (executor workers, the API):
    what a night cost, whatever else the machine was doing."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


# What the night's tasks import, loaded once here: the executor's workers are forked from
# this process and fork each task in turn, so every task starts with them in memory
# (copy-on-write) instead of paying 3-10 s of imports (pandas, pyiceberg) in each of its
# 25 processes. Not Great Expectations: only the quality page imports it (the validations
# count without it, decision 0013), in its own task beside the open data, while here its
# 2.5 s of imports held up the night's first task.
TASK_MODULES = (
    "etl.nightly",
    "etl.validate",
    "etl.unify",
    "etl.publish_shared",
    "etl.publish_public",
    "etl.connections",
    "pyiceberg.catalog.sql",
    # what unify imports when it first compares names (0.8 s; here they load while this
    # process waits for the execution API's child anyway, off the night's critical path)
    "pypinyin",
    "rapidfuzz.process",
    "rapidfuzz.distance.OSA",
    "scipy.sparse.csgraph",
    "adbc_driver_sqlite.dbapi",
    "adbc_driver_postgresql.dbapi",
    # what a task's first validation still imported (measured: 332 modules, 3 s of a 5 s
    # validation): the store's Alembic check, the standardisers, Airflow's task side
    "alembic.command",
    "alembic.runtime.migration",
    "alembic.autogenerate",
    "mako.template",
    "pygments.formatters.html",
    "opencc",
    "stdnum",
    "jinja2.ext",
    "dill",
    "encodings.gbk",
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "airflow.models.dag",
    "airflow.models.taskinstance",
    "airflow.serialization.serialized_objects",
)


def _preload_task_modules() -> None:
    import importlib

    for name in TASK_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional driver: its tasks import (and fail) themselves
            continue
    from etl.nightly import night_catalog

    night_catalog()  # parsed once here, inherited by every forked task


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


# No fork while the watcher's thread is inside SQLite. The LocalExecutor forks its workers
# from `lake run` whenever it needs one, and each worker forks the tasks: a fork taken while
# this thread held SQLite's allocator mutex gives the child that mutex locked with no thread
# to unlock it, and the child's first catalog query waits forever (seen at full scale: an
# extraction hung in `CatalogStore()` for its whole two-hour timeout). The watcher queries
# under this lock and every fork of the process takes it first.
_STORE_QUERY = threading.Lock()
os.register_at_fork(
    before=_STORE_QUERY.acquire,
    after_in_parent=_STORE_QUERY.release,
    after_in_child=_STORE_QUERY.release,
)


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
        with _STORE_QUERY:  # no fork meanwhile (see _STORE_QUERY)
            parts = self.store.partitions_after(self.seen_partition)
            errors = self.store.errors_after(self.seen_error)
        for part in parts:
            self.seen_partition = part.id
            self.say(f"  {part.zone:15s} {part.dataset_id:36s} {part.rows:>10,} rows")
        for error in errors:
            self.seen_error = error.id
            self.say(f"  FAILED {error.message}")


def default_demo_date() -> date:
    """Yesterday in Shanghai: the night that runs this morning."""
    return datetime.now(LAKE_TZ).date() - timedelta(days=1)
