"""The steps of one night, as plain functions the DAG tasks (and tests) call.

Each step takes the catalog dataset id, the partition date and the run id, opens what it
needs from :class:`LakeSettings`, and returns a small JSON-able dict for XCom. No Airflow
imports at module level: the DAG injects the connection lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from catalog.definitions import load_catalog
from catalog.errors import LakeError, one_line
from catalog.store import CatalogStore
from etl.connections import SourceConnection
from etl.extract import extract_to_raw
from etl.settings import LakeSettings
from etl.zones import Lake

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
    """Record why a step failed, in one line, where `lake run` and `lake status` find it."""
    try:
        yield
    except LakeError as exc:
        store.record_error(run_id, step, str(exc))
        raise
    except Exception as exc:  # a bug or an environment problem: still say it in one line
        store.record_error(run_id, step, f"{step}: {one_line(exc)}")
        raise
    store.clear_errors(run_id, step)  # a retry that succeeds leaves no failure behind


def open_night(run_id: str, ds: date, settings: LakeSettings | None = None) -> str:
    settings = settings or LakeSettings.from_env()
    CatalogStore(settings.catalog_url).start_run(run_id, ds)
    return ds.isoformat()


def extract_dataset(
    dataset_id: str,
    ds: date,
    run_id: str,
    lookup_connection: Callable[[str], SourceConnection],
    settings: LakeSettings | None = None,
) -> dict:
    """Extract one catalog dataset's delivery for ``ds`` into the raw zone."""
    settings = settings or LakeSettings.from_env()
    dataset = load_catalog().dataset(dataset_id)
    store = CatalogStore(settings.catalog_url)
    with recorded_failure(store, run_id, f"extract {dataset_id}"):
        result = extract_to_raw(
            dataset,
            lookup_connection(dataset.source.connection_id),
            ds,
            lake=Lake(settings.lake_root),
            store=store,
            batch_id=run_id,
        )
    return {
        "dataset": dataset_id,
        "rows": result.rows,
        "path": result.path,
        "summary": result.summary(),
    }


def validate_dataset(
    dataset_id: str, ds: date, run_id: str, settings: LakeSettings | None = None
) -> dict:
    """Standardise, validate, quarantine and deduplicate one dataset's raw partition."""
    from etl.validate import validate_partition

    settings = settings or LakeSettings.from_env()
    store = CatalogStore(settings.catalog_url)
    with recorded_failure(store, run_id, f"validate {dataset_id}"):
        result = validate_partition(
            load_catalog().dataset(dataset_id),
            ds,
            lake=Lake(settings.lake_root),
            store=store,
            run_id=run_id,
            docs_dir=quality_docs_dir(settings, dataset_id),
            work_dir=settings.var / "tmp",
        )
    return {"dataset": dataset_id, "summary": result.summary(), "docs": result.docs}


def quality_docs_dir(settings: LakeSettings, dataset_id: str) -> Path:
    """Where a dataset's Great Expectations Data Docs go (one site per dataset)."""
    return settings.var / "quality" / "docs" / dataset_id


def quality_gate(ds: date, run_id: str, settings: LakeSettings | None = None) -> dict:
    """Pass only if this run validated every catalog dataset of ``ds`` with rows conserved.

    Unification and publishing depend on this task: a tripped circuit breaker upstream
    (or a missing dataset) keeps the whole night from publishing.
    """
    settings = settings or LakeSettings.from_env()
    store = CatalogStore(settings.catalog_url)
    figures = {q.dataset_id: q for q in store.quality(ds) if q.run_id == run_id}
    missing = [d.id for d in load_catalog().datasets if d.id not in figures]
    broken = [q.dataset_id for q in figures.values() if not q.conserved]
    with recorded_failure(store, run_id, "quality gate"):
        if missing or broken:
            raise LakeError(
                f"quality gate for {ds}: not validated: {missing or 'none'}; "
                f"rows not conserved: {broken or 'none'}"
            )
    figures_shown = ("delivered", "clean", "quarantined", "collapsed")
    return {k: {f: getattr(q, f) for f in figures_shown} for k, q in figures.items()}


def close_night(
    run_id: str, ds: date, failed_tasks: list[str], settings: LakeSettings | None = None
) -> dict:
    """Record the night as success or failed and write the quality page.

    Runs after every step whatever their outcome. ``failed_tasks`` comes from Airflow's
    task states, so a task killed without a word (out of memory, timeout) still fails the
    night; the store's error lines say why where a step could say it.
    """
    from etl.quality_report import write_quality_index

    settings = settings or LakeSettings.from_env()
    store = CatalogStore(settings.catalog_url)
    errors = store.errors(run_id)
    failed = bool(errors or failed_tasks)
    store.finish_run(run_id, "failed" if failed else "success")
    write_quality_index(store, settings.var / "quality" / "index.html")
    if failed:
        steps = sorted({e.step for e in errors} | set(failed_tasks))
        raise LakeError(f"night {ds} failed: {', '.join(steps)}")
    return {f"{p.zone}:{p.dataset_id}": p.rows for p in store.partitions(ds=ds)}
