"""The DAG files import, are built from the catalog, and a whole night runs via dag.test()."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from catalog.definitions import load_catalog
from catalog.errors import LakeError
from catalog.store import CatalogStore
from etl.airflow_runner import DAG_ID, logical_date_for, run_night
from etl.nightly import partition_date
from etl.score import pairwise_scores, read_truth
from etl.settings import REPO_ROOT, SOURCE_POOL, LakeSettings
from etl.unify import TABLES as UNIFIED_TABLES
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


def test_the_biggest_deliveries_start_first_and_the_open_data_beside_unify(dagbag) -> None:
    """Ready tasks beyond the executor's slots start by priority: the catalog's expected
    rows. The open data reads the clean zone only: it follows the gate, beside unify, and
    starts before the quality page and the shared extracts if they are ever ready with it."""
    dag = dagbag.dags[DAG_ID]
    catalog = load_catalog()
    by_size = sorted(catalog.datasets, key=lambda d: d.expected_work, reverse=True)
    assert by_size[0].expected_work > by_size[-1].expected_work > 0
    # the national-tax workbook (200 k rows, read row by row) before the 441 k service
    # cases read from SQL: the longer chain starts first
    taxpayer, cases = catalog.dataset("guoshui.taxpayer"), catalog.dataset("xingzheng.service_case")
    assert taxpayer.expected_rows < cases.expected_rows
    assert by_size.index(taxpayer) < by_size.index(cases)
    for step in ("extract", "validate"):
        tasks = [dag.get_task(f"{d.department}__{d.code}.{step}") for d in by_size]
        weights = [t.priority_weight for t in tasks]
        assert weights == sorted(weights, reverse=True) and weights[0] > weights[-1]
        assert {str(t.weight_rule) for t in tasks} == {"absolute"}  # not summed downstream
    published = dag.get_task("publish_public")
    assert published.upstream_task_ids == {"quality_gate"}
    assert "unify" in dag.get_task("quality_gate").downstream_task_ids
    after_unify = [dag.get_task(t) for t in ("quality_page", "shared_consumers")]
    assert published.priority_weight > max(t.priority_weight for t in after_unify)


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


def test_a_whole_night_runs_through_airflow(
    departments, session_settings: LakeSettings, monkeypatch
) -> None:
    from catalog.grants import GrantRegistry, GrantRequest
    from masking.keys import ENV_KEY_FILE, create_key_file

    store = CatalogStore(session_settings.catalog_url)
    grants = GrantRegistry(store)
    for consumer in ("dishui", "renshe"):  # two mapped shared tasks, this night only
        request = GrantRequest(
            consumer, "gongan.population", ["person_no", "id_no", "name"], "test", "test",
            valid_from=DEMO_DATE, valid_to=DEMO_DATE,
        )  # fmt: skip
        grants.add(request, load_catalog(), by="test")
    key_file = session_settings.var / "night-masking.key"
    create_key_file(key_file)
    monkeypatch.setenv(ENV_KEY_FILE, str(key_file))
    result = run_night(session_settings, DEMO_DATE)
    assert result.state == "success", result.failed_tasks
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
    unified = {p.dataset_id for p in store.partitions(ds=DEMO_DATE, zone="raw/unified")}
    assert unified == {f"unified.{t}" for t in UNIFIED_TABLES}
    figures = store.unification(DEMO_DATE)
    assert figures.conserved and figures.clean_rows == sum(clean.values())
    assert figures.conflicting_id_clusters == 0 and figures.persons > 0
    truth = read_truth(session_settings.ground_truth_dir)
    for entity, target in (("person", 0.995), ("enterprise", 0.99)):
        xref = lake.read_partition(lake.unified_partition(f"{entity}_xref", DEMO_DATE))
        overall = pairwise_scores(xref.to_pandas(), f"{entity}_id", truth)[0]
        assert overall.rule == "all" and overall.f1 >= target, (entity, overall)
    index = (session_settings.var / "quality" / "index.html").read_text()
    assert all(dataset_id in index for dataset_id in departments.rows)
    # the open data went out after the gate: microdata, statistics, catalogue and page
    public = {p.dataset_id for p in store.partitions(ds=DEMO_DATE, zone="public")}
    assert {"xingzheng.service_case", "stats/cases_by_district"} <= public
    assert "publish_public" not in result.failed_tasks
    portal = Path(session_settings.lake_root) / "public" / "index.html"
    assert "xingzheng.service_case" in portal.read_text(encoding="utf-8")
    shared = {d.consumer: d for d in grants.distributions(DEMO_DATE) if d.run_id == result.run_id}
    assert set(shared) == {"dishui", "renshe"}  # one mapped task per consumer delivered
    assert {d.rows for d in shared.values()} == {clean["gongan.population"]}
    assert all(d.delivered and Path(d.path, "data.csv").exists() for d in shared.values())


def test_a_night_without_deliveries_fails_naming_the_missing_file(
    departments, session_settings: LakeSettings
) -> None:
    missing_day = DEMO_DATE + timedelta(days=30)
    result = run_night(session_settings, missing_day)
    assert result.state == "failed"
    # file drops fail (no file for that day); SQL sources still extract (an empty window)
    assert "renshe__insured_person.extract" in result.failed_tasks
    assert "gongan__population.extract" not in result.failed_tasks
    errors = CatalogStore(session_settings.catalog_url).errors(result.run_id)
    messages = {e.step: e.message for e in errors}
    assert "no delivery for" in messages["extract renshe.insured_person"]
    assert "insured_person_" in messages["extract renshe.insured_person"]


def _deliver_again(departments, night: date) -> None:
    """The session's file drops (and their control files) delivered again on ``night``."""
    import shutil

    for dataset in load_catalog().datasets:
        if dataset.source.kind != "sql":
            folder = departments.out_dir / dataset.department
            name = dataset.source.path or ""
            for suffix in ("", ".ctl"):
                shutil.copy(
                    folder / (name.format(ds_nodash=f"{DEMO_DATE:%Y%m%d}") + suffix),
                    folder / (name.format(ds_nodash=f"{night:%Y%m%d}") + suffix),
                )


def test_broken_deliveries_fail_their_dataset_and_nothing_passes_the_gate(
    departments, session_settings: LakeSettings, tmp_path, capfd
) -> None:
    """A GBK CSV cut at a row boundary in transfer (the full export's control file) fails
    extraction; a delivery that is mostly invalid trips the quarantine breaker."""
    import pandas as pd

    import simulator
    from tests.helpers import with_control_file

    night = DEMO_DATE + timedelta(days=2)
    _deliver_again(departments, night)
    simulator.make_hostile_delivery(
        departments.out_dir, "renshe.insured_person", "cut_at_row", night
    )
    broken = departments.out_dir / "zhijian" / f"org_code_{night:%Y%m%d}.csv"
    frame = pd.read_csv(broken, encoding="utf-8-sig", dtype=str)
    frame.loc[frame.index[: len(frame) * 2 // 3], "org_code"] = "12345678-0"  # wrong check
    frame.to_csv(broken, index=False, encoding="utf-8-sig")
    with_control_file(broken, len(frame))
    log_file = tmp_path / "night.log"
    result = run_night(session_settings, night, log_file=log_file, show_progress=True)
    shown = capfd.readouterr().out  # progress lines reach the terminal as the night runs
    assert "FAILED renshe.insured_person" in shown and "raw/clean       weiji" in shown
    assert result.state == "failed"
    assert "renshe__insured_person.extract" in result.failed_tasks
    assert "zhijian__org_code.validate" in result.failed_tasks
    assert "quality_gate" in result.failed_tasks  # upstream_failed: unify/publish never run
    assert "unify" in result.failed_tasks
    assert CatalogStore(session_settings.catalog_url).unification(night) is None
    assert "weiji__health_record.validate" not in result.failed_tasks
    store = CatalogStore(session_settings.catalog_url)
    messages = {e.step: e.message for e in store.errors(result.run_id)}
    cut = messages["extract renshe.insured_person"]
    assert "insured_person_" in cut and "SHA-256 differs" in cut and "\n" not in cut
    assert "above the limit of 5%" in messages["validate zhijian.org_code"]
    raw = {p.dataset_id for p in store.partitions(ds=night, zone="raw/sources")}
    assert "renshe.insured_person" not in raw and "weiji.health_record" in raw
    quarantine = {p.dataset_id: p.rows for p in store.partitions(ds=night, zone="raw/quarantine")}
    assert quarantine["zhijian.org_code"] >= len(frame) * 2 // 3 - 10
    assert store.runs(1)[0].status == "failed"


def test_a_shrunk_snapshot_fails_the_night_until_a_person_accepts_it(
    departments, session_settings: LakeSettings
) -> None:
    """Issue 8, seen 1 through Airflow: a snapshot 40 % smaller, its control file agreeing,
    never gives "success"; `lake accept` once, run again: success, and it is recorded."""
    import getpass

    from click.testing import CliRunner

    import simulator
    from etl.cli import main

    night = DEMO_DATE + timedelta(days=10)
    _deliver_again(departments, night)
    simulator.make_hostile_delivery(
        departments.out_dir, "renshe.insured_person", "cut_at_row", night, control="fresh"
    )
    store = CatalogStore(session_settings.catalog_url)
    first = run_night(session_settings, night)
    assert first.state == "failed" and "quality_gate" in first.failed_tasks
    assert "renshe__insured_person.extract" in first.failed_tasks
    messages = {e.step: e.message for e in store.errors(first.run_id)}
    shrink = messages["extract renshe.insured_person"]
    assert "volume check" in shrink and "snapshot shrank by 40.0%" in shrink
    assert "renshe.insured_person" not in {
        p.dataset_id for p in store.partitions(ds=night, zone="raw/sources")
    }
    tripped = sorted(
        step.split(" ", 1)[1] for step, line in messages.items() if "volume check" in line
    )
    assert tripped == ["renshe.insured_person"]  # quiet SQL windows are not a shrink
    for dataset_id in tripped:
        accepted = CliRunner().invoke(
            main, ["accept", dataset_id, "--date", str(night), "--reason", "checked with dept"]
        )
        assert accepted.exit_code == 0, accepted.output
        assert f"accepted {dataset_id} {night} by {getpass.getuser()}" in accepted.output
    second = run_night(session_settings, night)
    assert second.state == "success", second.failed_tasks
    acceptance = store.acceptance("renshe.insured_person", night)
    assert acceptance.accepted_by == getpass.getuser() and acceptance.reason == "checked with dept"
    raw = {p.dataset_id: p.rows for p in store.partitions(ds=night, zone="raw/sources")}
    assert raw["renshe.insured_person"] == int(departments.rows["renshe.insured_person"] * 0.6)
    quality = {q.dataset_id: q for q in store.quality(night)}
    assert all(q.conserved for q in quality.values()) and len(quality) == len(raw) == 8
    assert store.runs(1)[0].status == "success"
