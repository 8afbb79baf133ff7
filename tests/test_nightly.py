"""Night bookkeeping: failures are recorded in one line, and a successful retry clears them."""

from __future__ import annotations

import re

import pytest

from catalog.errors import LakeError, one_line
from catalog.store import CatalogStore
from etl.nightly import recorded_failure
from tests.helpers import lock_held_elsewhere


def test_a_retry_that_succeeds_clears_the_failure(tmp_path) -> None:
    store = CatalogStore(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(LakeError), recorded_failure(store, "run", "extract a"):
        raise LakeError("a: no delivery for 2026-11-28")
    with pytest.raises(LakeError), recorded_failure(store, "run", "extract b"):
        raise LakeError("b: broken")
    assert [e.message for e in store.errors("run")] == [
        "a: no delivery for 2026-11-28",
        "b: broken",
    ]
    with recorded_failure(store, "run", "extract a"):
        pass  # the file arrived; the retry succeeded
    assert [e.step for e in store.errors("run")] == ["extract b"]


def test_unexpected_errors_are_one_line_without_quoted_values(tmp_path) -> None:
    store = CatalogStore(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(ValueError), recorded_failure(store, "run", "validate x"):
        raise ValueError("Failed to parse string: '44070319850214123X' as a scalar\ndetails")
    (error,) = store.errors("run")
    assert error.message == "validate x: ValueError: Failed to parse string: '…' as a scalar"
    assert one_line(KeyError("name")) == "KeyError: '…'"


def test_quality_gate_needs_every_dataset_validated_by_this_run(tmp_path) -> None:
    from datetime import date

    from catalog.definitions import load_catalog
    from catalog.figures import QualityFigures
    from etl.nightly import Night, quality_gate
    from etl.settings import LakeSettings

    settings = LakeSettings.under(tmp_path)
    store = CatalogStore(settings.catalog_url)
    night = date(2026, 11, 28)
    this_run = Night.open(night, "this-run", settings)

    def validated(dataset_id: str, run: str, clean: int = 10) -> None:
        store.record_quality(run, QualityFigures(dataset_id, night, 10, clean, 0, 0, 5, 0, {}))

    datasets = [d.id for d in load_catalog().datasets]
    for dataset_id in datasets[1:]:
        validated(dataset_id, "this-run")
    validated(datasets[0], "an-earlier-run")  # stale figures do not count
    with pytest.raises(LakeError, match=re.escape(f"not validated: ['{datasets[0]}']")):
        quality_gate(this_run)
    assert store.errors("this-run")[0].step == "quality gate"
    validated(datasets[0], "this-run", clean=9)  # one row unaccounted for
    with pytest.raises(LakeError, match=re.escape(f"rows not conserved: ['{datasets[0]}']")):
        quality_gate(this_run)
    validated(datasets[0], "this-run")
    figures = quality_gate(this_run)
    assert figures[datasets[0]] == {
        "delivered": 10,
        "unchanged": 0,
        "clean": 10,
        "quarantined": 0,
        "collapsed": 0,
        "deleted": 0,
    }
    assert store.errors("this-run") == []  # passing clears the gate's earlier failure


def test_a_task_that_died_without_a_word_still_fails_the_night(tmp_path) -> None:
    from datetime import date

    from etl.nightly import Night, close_night, open_night, quality_page
    from etl.settings import LakeSettings

    settings = LakeSettings.under(tmp_path)
    night = Night.open(date(2026, 11, 28), "run", settings)
    open_night(night)
    assert quality_page(night) == str(settings.var / "quality" / "index.html")
    with pytest.raises(LakeError, match="night 2026-11-28 failed: renshe__insured_person.extract"):
        close_night(night, ["renshe__insured_person.extract"])
    assert CatalogStore(settings.catalog_url).runs(1)[0].status == "failed"
    assert (settings.var / "quality" / "index.html").exists()


def test_heavy_validations_wait_for_each_other_and_small_ones_do_not(tmp_path) -> None:
    import threading
    from datetime import date

    from etl.nightly import HeavyStepBusy, Night, one_heavy_step_at_a_time
    from etl.settings import LakeSettings

    night = Night.open(date(2026, 11, 28), "run", LakeSettings.under(tmp_path))
    heavy_rows = night.settings.heavy_step_rows
    # another task's process in the middle of a heavy validation
    holder = lock_held_elsewhere(night.work_dir / "heavy-step.lock")
    try:
        with one_heavy_step_at_a_time(night, heavy_rows - 1, wait=False) as small:
            pass  # a small delivery goes ahead
        assert small["waited_s"] == 0
        busy_step = one_heavy_step_at_a_time(night, heavy_rows, "renshe.insured_person", wait=False)
        with pytest.raises(HeavyStepBusy) as busy, busy_step:  # a task gives its slot back
            raise AssertionError("entered a heavy step while another one runs")
        assert busy.value.retry_in_s > 0 and "renshe.insured_person" in str(busy.value)
        entered, waits = threading.Event(), []

        def heavy() -> None:
            with one_heavy_step_at_a_time(night, heavy_rows) as lock:  # by hand: it waits
                entered.set()
            waits.append(lock["waited_s"])

        waiter = threading.Thread(target=heavy, daemon=True)
        waiter.start()
        assert not entered.wait(1.0)  # a heavy one waits while the other runs
    finally:
        holder.kill()  # the other task ends (its process dies: the lock goes)
        holder.wait()
    assert entered.wait(60)
    waiter.join()
    assert waits[0] >= 0.9  # the wait is handed back: it is not the validation's own time


def test_small_nights_run_in_process_and_others_concurrently(tmp_path) -> None:
    from datetime import date

    from catalog.store import PartitionRecord
    from etl.airflow_runner import SMALL_NIGHT_ROWS, runs_concurrently
    from etl.settings import LakeSettings

    settings = LakeSettings.under(tmp_path)
    assert runs_concurrently(settings)  # no night yet: a first night, the largest
    store = CatalogStore(settings.catalog_url)

    def delivered(ds: date, rows: list[int]) -> None:
        for i, n in enumerate(rows):
            record = PartitionRecord("raw/sources", f"d.s{i}", ds, f"/lake/{ds}/{i}", n, "f")
            store.record_partition("run", record)

    delivered(date(2026, 11, 27), [SMALL_NIGHT_ROWS - 1, 1])
    assert runs_concurrently(settings)
    delivered(date(2026, 11, 28), [SMALL_NIGHT_ROWS // 2, SMALL_NIGHT_ROWS // 2 - 1])
    assert not runs_concurrently(settings)  # the latest night decides, not the largest


def test_a_new_lake_copies_a_migrated_airflow_database_and_never_overwrites_one(
    tmp_path,
) -> None:
    import sqlite3

    from etl.airflow_runner import copied_airflow_database

    template = tmp_path / "cache" / "airflow-x.db"
    template.parent.mkdir()
    with sqlite3.connect(template) as db:
        db.execute("CREATE TABLE alembic_version (version_num TEXT)")
        db.execute("INSERT INTO alembic_version VALUES ('head')")
    db.close()
    lake_db = tmp_path / "home" / "var" / "airflow" / "airflow.db"
    assert copied_airflow_database(template, lake_db)
    assert lake_db.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(lake_db) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("head",)]
    db.close()
    assert not copied_airflow_database(template, lake_db)  # a lake's own database stays
    busy = tmp_path / "busy.db"
    busy.write_bytes(template.read_bytes())
    (tmp_path / "busy.db-wal").write_bytes(b"pending")  # not quiescent: not a template
    assert not copied_airflow_database(busy, tmp_path / "other" / "airflow.db")
    assert not copied_airflow_database(tmp_path / "missing.db", tmp_path / "x" / "airflow.db")


def test_the_catalog_is_parsed_once_per_process_until_a_definition_changes(
    tmp_path, monkeypatch
) -> None:
    import os
    import shutil

    import etl.nightly
    from catalog.definitions import DEFINITIONS_DIR, Catalog

    definitions = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS_DIR, definitions)
    monkeypatch.setattr(etl.nightly, "DEFINITIONS_DIR", definitions)
    monkeypatch.setattr(etl.nightly, "_CATALOGS", {})  # this test's, dropped after it
    parses = []  # one new catalog object per parse
    monkeypatch.setattr(etl.nightly, "load_catalog", lambda d: parses.append(d) or Catalog([]))
    first = etl.nightly.night_catalog()
    assert etl.nightly.night_catalog() is first  # every task of the process: no new parse
    changed = definitions / "zhijian.yaml"
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert etl.nightly.night_catalog() is not first  # an edited definition is read again
    assert parses == [definitions, definitions]


def test_no_fork_while_the_night_watcher_is_inside_the_catalog(tmp_path) -> None:
    """The LocalExecutor forks workers from `lake run` while the watcher's thread polls the
    catalog: a fork taken inside SQLite leaves the child a locked allocator mutex and the
    child's first query hangs. A fork must wait for the watcher's query to end."""
    import os
    import threading

    from etl.airflow_runner import _NightWatcher
    from etl.settings import LakeSettings

    watcher = _NightWatcher(LakeSettings.under(tmp_path), say=lambda line: None)
    inside, leave, forked = threading.Event(), threading.Event(), threading.Event()
    query = watcher.store.partitions_after

    def slow_query(partition_id: int):
        inside.set()
        leave.wait(60)  # the watcher's thread stays in its query until told
        return query(partition_id)

    watcher.store.partitions_after = slow_query
    polling = threading.Thread(target=watcher._report, daemon=True)
    polling.start()
    assert inside.wait(60)

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        forked.set()

    forking = threading.Thread(target=fork, daemon=True)
    forking.start()
    assert not forked.wait(1.0)  # the fork waits while the watcher is in its query
    leave.set()
    assert forked.wait(60)
    polling.join()
    forking.join()


def test_the_steps_beside_unify_give_way_in_their_own_process_only() -> None:
    """The open data and the quality page run niced beside unify (decision 0024), but not
    when `lake run` runs the tasks inside its own process: it runs the others after them."""
    import os
    import subprocess
    import sys

    from etl.nightly import BESIDE_UNIFY_NICENESS, IN_PROCESS_VARIABLE

    probe = (
        "import os; from etl.nightly import give_way_to_unify; "
        "before = os.nice(0); give_way_to_unify(); print(before, os.nice(0))"
    )

    def niceness(environment: dict[str, str]) -> tuple[int, int]:
        env = {k: v for k, v in os.environ.items() if k != IN_PROCESS_VARIABLE} | environment
        done = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        )
        before, after = map(int, done.stdout.split())
        return before, after

    before, after = niceness({})
    assert after == min(before + BESIDE_UNIFY_NICENESS, 19)  # 19: the lowest priority
    before, after = niceness({IN_PROCESS_VARIABLE: "1"})
    assert after == before
