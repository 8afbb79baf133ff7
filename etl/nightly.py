"""The steps of one night, as plain functions the DAG tasks (and tests) call.

Each step takes a :class:`Night` (built once per task at the DAG/CLI edge: settings, store,
lake, catalog, date, run id) and returns a small JSON-able dict for XCom. Secrets — source
connections today, the masking key next — are looked up at that edge and handed in; nothing
here reads the environment. No Airflow imports: the DAG does the Airflow side.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from catalog.definitions import DEFINITIONS_DIR, Catalog, load_catalog
from catalog.errors import LakeError, shown_error
from catalog.store import CatalogStore
from etl.connections import SourceConnection
from etl.extract import extract_to_raw
from etl.settings import LakeSettings
from etl.zones import Lake
from masking.keys import MasterKey

LAKE_TZ = ZoneInfo("Asia/Shanghai")


def partition_date(
    data_interval_start: datetime | None, logical_date: datetime | None, conf: dict | None
) -> date:
    """The night's partition date, in Asia/Shanghai.

    ``conf['ds']`` wins when given. Otherwise the start of the run's data interval: for a
    scheduled or backfilled run that is its logical date (02:00 on D processes day D), and
    for a manual trigger the last complete night, whatever time it was triggered. Runs with
    neither (asset-triggered) must carry ``ds`` in their conf.
    """
    if conf and conf.get("ds"):
        try:
            return date.fromisoformat(str(conf["ds"]))
        except ValueError as exc:
            raise LakeError(f"run conf 'ds' must be YYYY-MM-DD, got {conf['ds']!r}") from exc
    moment = data_interval_start or logical_date
    if moment is None:
        raise LakeError('this run has no logical date; trigger it with conf {"ds": "YYYY-MM-DD"}')
    return moment.astimezone(LAKE_TZ).date()


@contextmanager
def recorded_failure(store: CatalogStore, run_id: str, step: str) -> Iterator[None]:
    """Record why a step failed, in one masked line, where `lake run` and `lake status` find it.

    The DAG raises the same line to Airflow (:func:`catalog.errors.shown_error`), so the task
    log and the store say the same thing and neither carries a delivered value.
    """
    try:
        yield
    except LakeError as exc:
        store.record_error(run_id, step, shown_error(exc))
        raise
    except Exception as exc:  # a bug or an environment problem: still say it in one line
        store.record_error(run_id, step, f"{step}: {shown_error(exc)}")
        raise
    store.clear_errors(run_id, step)  # a retry that succeeds leaves no failure behind


_CATALOGS: dict[tuple, Catalog] = {}


def night_catalog() -> Catalog:
    """The catalog, parsed once per process while its files stay the same.

    Every task opens a :class:`Night`: in-process (the demo) all 25 tasks share this
    process, and forked tasks inherit the catalog `lake run` loaded before the fork, instead
    of each parsing and checking the YAML again. A changed, added or removed definition file
    changes the key (names, sizes, modification times), so an edit is never missed.
    """
    files = sorted(DEFINITIONS_DIR.glob("*.yaml"))
    key = (str(DEFINITIONS_DIR), *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _CATALOGS:
        _CATALOGS.clear()
        _CATALOGS[key] = load_catalog(DEFINITIONS_DIR)
    return _CATALOGS[key]


@dataclass(frozen=True)
class Night:
    """What every step of one night needs, opened once per task instead of in every step."""

    ds: date
    run_id: str
    settings: LakeSettings
    store: CatalogStore
    lake: Lake
    catalog: Catalog

    @classmethod
    def open(cls, ds: date, run_id: str, settings: LakeSettings) -> Night:
        lake = settings.lake()
        return cls(
            ds=ds,
            run_id=run_id,
            settings=settings,
            store=lake.store,
            lake=lake,
            catalog=night_catalog(),
        )

    @property
    def work_dir(self) -> Path:
        """Spill files (key buckets, quarantined rows) of this machine's steps."""
        return self.settings.var / "tmp"

    def quality_docs_dir(self, dataset_id: str) -> Path:
        """Where a dataset's Great Expectations Data Docs go (one site per dataset)."""
        return self.settings.var / "quality" / "docs" / dataset_id

    def failure_recorded(self, step: str) -> AbstractContextManager[None]:
        return recorded_failure(self.store, self.run_id, step)


def open_night(night: Night) -> str:
    """Record the run as started; clear spill files that a killed earlier run left behind."""
    from etl.dedup import remove_orphaned_spills

    night.store.start_run(night.run_id, night.ds)
    remove_orphaned_spills(night.work_dir)
    night.lake.iceberg  # noqa: B018 - creates the Iceberg catalog's tables before tasks run side by side
    return night.ds.isoformat()


def extract_dataset(night: Night, dataset_id: str, connection: SourceConnection) -> dict:
    """Extract one catalog dataset's delivery into the raw zone, through ``connection``."""
    dataset = night.catalog.dataset(dataset_id)
    with night.failure_recorded(f"extract {dataset_id}"):
        result = extract_to_raw(
            dataset, connection, night.ds, lake=night.lake, store=night.store, batch_id=night.run_id
        )
    return {
        "dataset": dataset_id,
        "rows": result.rows,
        "path": result.path,
        "summary": result.summary(),
    }


class HeavyStepBusy(Exception):
    """Another process holds the heavy-step lock: try again later, do not wait here.

    Not a failure: the DAG turns it into Airflow's reschedule, which frees the task's
    executor slot for other work while the heavy step runs (see :func:`validate_dataset`).
    """

    def __init__(self, dataset_id: str, retry_in_s: float) -> None:
        super().__init__(f"{dataset_id}: another heavy step is running")
        self.retry_in_s = retry_in_s


# How soon a validation that found the heavy-step lock busy asks to run again: a heavy
# validation takes 10-25 s at full scale, and each try costs a task start (a fraction of
# a second), so a few tries per wait.
HEAVY_STEP_RETRY_S = 2.0


@contextmanager
def one_heavy_step_at_a_time(
    night: Night, rows: int, dataset_id: str = "", wait: bool = True
) -> Iterator[dict[str, float]]:
    """Hold the machine's heavy-step lock when ``rows`` is large; else go ahead.

    Deliveries of ``settings.heavy_step_rows`` or more are validated one at a time, so
    that two of them side by side cannot take the memory the night is granted (decision
    0015 has the measurements).
    A lock file under ``var/tmp`` (``flock``): tasks run as processes of their own, and the
    kernel releases the lock of a process that dies, so a killed task never blocks a night.

    ``wait=False`` (the night's tasks) raises :class:`HeavyStepBusy` at once when the lock
    is held, so the task gives its executor slot back instead of sleeping in it.
    ``wait=True`` (callers outside the night: benchmarks, tests) waits, and hands the wait
    back (``waited_s``): a validation that waited 30 s for another one did not take 30 s
    longer to validate.
    """
    waited = {"waited_s": 0.0}
    if rows < night.settings.heavy_step_rows:
        yield waited
        return
    import fcntl
    import time

    night.work_dir.mkdir(parents=True, exist_ok=True)
    with open(night.work_dir / "heavy-step.lock", "a") as lock:
        started = time.monotonic()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise HeavyStepBusy(dataset_id, HEAVY_STEP_RETRY_S) from None
        waited["waited_s"] = round(time.monotonic() - started, 2)
        try:
            yield waited
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _delivered_rows(night: Night, dataset_id: str) -> int:
    """Rows of the dataset's raw partition for the night (0 when there is none yet)."""
    from etl.zones import RAW_SOURCES

    parts = night.store.partitions(ds=night.ds, zone=RAW_SOURCES)
    return next((p.rows for p in parts if p.dataset_id == dataset_id), 0)


def validate_dataset(night: Night, dataset_id: str, wait_for_heavy_step: bool = True) -> dict:
    """Standardise, validate, quarantine and deduplicate one dataset's raw partition.

    A large delivery waits for the heavy-step lock, or with ``wait_for_heavy_step=False``
    raises :class:`HeavyStepBusy` before anything is read (and nothing is recorded as failed).
    """
    from etl.validate import validate_partition

    rows = _delivered_rows(night, dataset_id)
    with (
        one_heavy_step_at_a_time(night, rows, dataset_id, wait_for_heavy_step),
        night.failure_recorded(f"validate {dataset_id}"),
    ):
        result = validate_partition(
            night.catalog.dataset(dataset_id),
            night.ds,
            lake=night.lake,
            store=night.store,
            run_id=night.run_id,
            docs_dir=night.quality_docs_dir(dataset_id),
            work_dir=night.work_dir,
        )
    return {"dataset": dataset_id, "summary": result.summary(), "docs": result.docs}


def shared_consumers(night: Night) -> list[str]:
    """Consumer departments with an active grant tonight: one mapped shared task each."""
    from catalog.grants import GrantRegistry

    return GrantRegistry(night.store).consumers(night.ds)


def publish_shared(night: Night, consumer: str, load_key: Callable[[], MasterKey]) -> dict:
    """Write ``consumer``'s shared extracts for the night (its active grants, masked)."""
    from etl.publish_shared import publish_for_consumer

    with night.failure_recorded(f"shared {consumer}"):
        results = publish_for_consumer(
            consumer,
            night.ds,
            catalog=night.catalog,
            lake=night.lake,
            store=night.store,
            run_id=night.run_id,
            load_key=load_key,
        )
    return {"consumer": consumer, "deliveries": [r.summary() for r in results]}


def quality_gate(night: Night) -> dict:
    """Pass only if this run validated every catalog dataset of the night with rows conserved.

    Unification and publishing depend on this task: a tripped circuit breaker upstream
    (or a missing dataset) keeps the whole night from publishing.
    """
    figures = {q.dataset_id: q for q in night.store.quality(night.ds) if q.run_id == night.run_id}
    missing = [d.id for d in night.catalog.datasets if d.id not in figures]
    broken = [q.dataset_id for q in figures.values() if not q.conserved]
    with night.failure_recorded("quality gate"):
        if missing or broken:
            raise LakeError(
                f"quality gate for {night.ds}: not validated: {missing or 'none'}; "
                f"rows not conserved: {broken or 'none'}"
            )
    figures_shown = ("delivered", "unchanged", "clean", "quarantined", "collapsed", "deleted")
    return {k: {f: getattr(q, f) for f in figures_shown} for k, q in figures.items()}


# Set while `lake run` runs the night's tasks inside its own process (a small night): a
# step must then leave the process's scheduling as it is
IN_PROCESS_VARIABLE = "YIMEN_TASKS_IN_PROCESS"
BESIDE_UNIFY_NICENESS = 10


def give_way_to_unify() -> None:
    """Lower this task process's CPU priority (``nice`` +10) for the rest of its life.

    The open data and the quality page run beside an incremental unify, which keeps most of
    the two cores busy but not all of them. At equal priority they took CPU from it and
    the night ended no sooner (decision 0024); niced, they run on what unify leaves idle.
    Not inside `lake run`'s own process, which runs the other tasks after them.
    """
    if not os.environ.get(IN_PROCESS_VARIABLE):
        os.nice(BESIDE_UNIFY_NICENESS)


def _night_rows(night: Night) -> int:
    """Rows of the night's clean partitions: how large tonight's unification and
    publication are, for the heavy-step lock."""
    from etl.zones import RAW_CLEAN

    return sum(p.rows for p in night.store.partitions(ds=night.ds, zone=RAW_CLEAN))


def unify(night: Night) -> dict:
    """Unified persons, enterprises, crosswalks and cases from the night's clean partitions.

    Runs only after the quality gate passed: a tripped breaker means no unification.
    A rebuild of a large night holds the heavy-step lock (it nearly fills the night's
    memory), so the open data, which runs beside unify, waits for it; an incremental
    night does not (decision 0024).
    """
    from etl.unify import unify_partitions

    waited: dict[str, float] = {}

    @contextmanager
    def rebuild_lock() -> Iterator[None]:
        with one_heavy_step_at_a_time(night, _night_rows(night), "unify") as lock:
            yield
        waited.update(lock)

    with night.failure_recorded("unify"):
        figures = unify_partitions(
            night.catalog,
            night.ds,
            lake=night.lake,
            store=night.store,
            run_id=night.run_id,
            scratch=night.settings.var / "tmp",
            mention_cache=night.settings.var / "cache" / "mentions",
            state_dir=night.settings.var / "cache" / "unify",
            rebuild_days=night.settings.unify_rebuild_days,
            rebuild_lock=rebuild_lock,
        )
    return {"summary": figures.summary(), "person_rules": figures.person_rules, **waited}


def publish_public(night: Night) -> dict:
    """Publish the open data: microdata behind the k-anonymity gate, statistics, DCAT
    catalogue and portal page, all behind the leak scan (``etl/publish_public.py``).

    A dataset the gate blocks keeps its previous publication and fails the step after the
    rest is published; a leak-scan finding publishes nothing of the night. It reads the
    clean zone only, so it runs beside unify; on a large night it holds the heavy-step
    lock, which a rebuilding unify holds too (decision 0024).
    """
    from etl.publish_public import publish_open_data

    with (
        one_heavy_step_at_a_time(night, _night_rows(night), "publish public") as waited,
        night.failure_recorded("publish public"),
    ):
        result = publish_open_data(
            night.catalog,
            night.lake,
            night.store,
            night.ds,
            night.run_id,
            state_dir=night.settings.var / "cache" / "public-state",
        )
    return {**result.summary(), **waited}


def quality_page(night: Night) -> str:
    """Render the Data Docs and the quality page (``var/quality/index.html``).

    Its own task, once every validation has ended whatever its outcome and the open data
    is published: on an incremental night it runs beside unify instead of after it, at the
    end of the night's critical path (GX's render: seconds). On a large night it takes
    the heavy-step lock, so it does not run beside a rebuilding unify, which needs the
    memory (decision 0024).
    """
    from etl.quality_report import write_quality_index

    page = night.settings.var / "quality" / "index.html"
    with one_heavy_step_at_a_time(night, _night_rows(night), "quality page"):
        return str(write_quality_index(night.store, page, night.catalog))


def close_night(night: Night, failed_tasks: list[str]) -> dict:
    """Record the night as success or failed.

    Runs after every step whatever their outcome. ``failed_tasks`` comes from Airflow's
    task states, so a task killed without a word (out of memory, timeout) still fails the
    night; the store's error lines say why where a step could say it.
    """
    store = night.store
    errors = store.errors(night.run_id)
    failed = bool(errors or failed_tasks)
    store.finish_run(night.run_id, "failed" if failed else "success")
    if failed:
        steps = sorted({e.step for e in errors} | set(failed_tasks))
        raise LakeError(f"night {night.ds} failed: {', '.join(steps)}")
    return {f"{p.zone}:{p.dataset_id}": p.rows for p in store.partitions(ds=night.ds)}
