"""The DAG files import, are built from the catalog, and a whole night runs via dag.test()."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from catalog.definitions import load_catalog
from catalog.errors import LakeError
from catalog.store import CatalogStore
from etl.airflow_runner import DAG_ID, logical_date_for, run_night
from etl.nightly import partition_date
from etl.settings import REPO_ROOT, SOURCE_POOL, LakeSettings
from tests.helpers import DEMO_DATE


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_all_dag_files_import_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dags


def test_nightly_dag_is_built_from_the_catalog(dagbag) -> None:
    dag = dagbag.dags[DAG_ID]
    assert dag.tags and "nightly" in dag.tags
    assert dag.max_active_runs == 1
    assert str(dag.timezone.name) == "Asia/Shanghai"
    extracts = [t for t in dag.tasks if t.task_id.endswith(".extract")]
    expected = {f"{d.department}__{d.code}.extract" for d in load_catalog().datasets}
    assert {t.task_id for t in extracts} == expected
    for t in extracts:
        assert t.retries >= 2 and t.retry_exponential_backoff
        assert t.pool == SOURCE_POOL


def test_partition_date_is_the_shanghai_date_or_the_conf_date() -> None:
    # 02:00 in Shanghai is 18:00 UTC the day before: the partition date must not slip a day
    night = logical_date_for(date(2026, 11, 28))
    assert partition_date(night, night, {}) == date(2026, 11, 28)
    utc = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert partition_date(None, utc, None) == date(2026, 11, 28)
    assert partition_date(None, None, {"ds": "2026-10-01"}) == date(2026, 10, 1)
    with pytest.raises(LakeError, match="no logical date"):
        partition_date(None, None, {})
    with pytest.raises(LakeError, match="YYYY-MM-DD"):
        partition_date(None, None, {"ds": "yesterday"})


def test_a_manual_trigger_processes_the_last_complete_night(dagbag) -> None:
    # triggered by hand at 09:00 on the 29th (Shanghai): the night of the 28th
    triggered = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
    interval = dagbag.dags[DAG_ID].timetable.infer_manual_data_interval(run_after=triggered)
    assert partition_date(interval.start, triggered, {}) == date(2026, 11, 28)


def test_backfill_range_maps_to_exactly_those_partition_dates(dagbag) -> None:
    # `airflow backfill create` asks the serialized DAG for its runs between two dates
    from airflow.sdk import timezone
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[DAG_ID]))
    runs = dag.iter_dagrun_infos_between(
        timezone.parse("2026-11-01"), timezone.parse("2026-11-03T02:00")
    )
    dates = [partition_date(run.data_interval.start, run.logical_date, {}) for run in runs]
    assert dates == [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]


def test_a_whole_night_runs_through_airflow(departments, session_settings: LakeSettings) -> None:
    result = run_night(session_settings, DEMO_DATE)
    assert result.state == "success", result.failed_tasks
    store = CatalogStore(session_settings.catalog_url)
    parts = {p.dataset_id: p for p in store.partitions(ds=DEMO_DATE, zone="raw/sources")}
    assert {k: p.rows for k, p in parts.items()} == departments.rows
    lake = session_settings.lake()
    for part in parts.values():
        assert lake.read_manifest(part.path).rows == part.rows
    quality = {q.dataset_id: q for q in store.quality(DEMO_DATE)}
    assert set(quality) == set(departments.rows)
    for dataset_id, q in quality.items():
        assert q.delivered == departments.rows[dataset_id] == q.clean + q.quarantined + q.collapsed
        assert q.quarantined / q.delivered < 0.05
    clean = {p.dataset_id: p.rows for p in store.partitions(ds=DEMO_DATE, zone="raw/clean")}
    assert clean == {k: q.clean for k, q in quality.items()}
    assert store.runs(1)[0].status == "success"
    index = (session_settings.var / "quality" / "index.html").read_text()
    assert all(dataset_id in index for dataset_id in departments.rows)


def test_a_night_without_deliveries_fails_naming_the_missing_file(
    departments, session_settings: LakeSettings
) -> None:
    missing_day = DEMO_DATE + timedelta(days=30)
    result = run_night(session_settings, missing_day)
    assert result.state == "failed"
    # file drops fail (no file for that day); SQL sources still extract
    assert "renshe__insured_person.extract" in result.failed_tasks
    assert "gongan__population.extract" not in result.failed_tasks
    errors = CatalogStore(session_settings.catalog_url).errors(result.run_id)
    messages = {e.step: e.message for e in errors}
    assert "no delivery for" in messages["extract renshe.insured_person"]
    assert "insured_person_" in messages["extract renshe.insured_person"]


def test_a_broken_delivery_trips_the_breaker_and_nothing_passes_the_gate(
    departments, session_settings: LakeSettings, tmp_path, capfd
) -> None:
    import shutil

    import simulator

    night = DEMO_DATE + timedelta(days=2)
    for dataset in load_catalog().datasets:  # the same files delivered again that night
        if dataset.source.kind != "sql":
            folder = departments.out_dir / dataset.department
            name = dataset.source.path
            shutil.copy(
                folder / name.format(ds_nodash=f"{DEMO_DATE:%Y%m%d}"),
                folder / name.format(ds_nodash=f"{night:%Y%m%d}"),
            )
    simulator.make_hostile_delivery(
        departments.out_dir, "renshe.insured_person", "renamed_column", night
    )
    log_file = tmp_path / "night.log"
    result = run_night(session_settings, night, log_file=log_file, show_progress=True)
    shown = capfd.readouterr().out  # progress lines reach the terminal as the night runs
    assert "FAILED renshe.insured_person" in shown and "raw/clean       weiji" in shown
    assert result.state == "failed"
    assert "renshe__insured_person.validate" in result.failed_tasks
    assert "quality_gate" in result.failed_tasks  # upstream_failed: unify/publish never run
    assert "weiji__health_record.validate" not in result.failed_tasks
    store = CatalogStore(session_settings.catalog_url)
    messages = {e.step: e.message for e in store.errors(result.run_id)}
    assert "above the limit of 5%" in messages["validate renshe.insured_person"]
    quarantine = {p.dataset_id: p.rows for p in store.partitions(ds=night, zone="raw/quarantine")}
    assert quarantine["renshe.insured_person"] == departments.rows["renshe.insured_person"]
    assert store.runs(1)[0].status == "failed"
