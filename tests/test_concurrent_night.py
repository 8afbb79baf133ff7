"""A night whose tasks run concurrently (LocalExecutor) writes what a sequential night writes.

The same session departments, two fresh lakes, one night each through the real Airflow:
``lake run``'s default (tasks handed to the LocalExecutor, two at a time, each in its own
process writing the shared SQLite catalog store) and every task one after the other in one
process. Every clean, quarantined, unified and public partition must hold the same rows.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from catalog.definitions import load_catalog
from catalog.store import CatalogStore
from etl.airflow_runner import run_night
from etl.settings import LakeSettings
from tests.helpers import DEMO_DATE, lock_held_elsewhere

RUN_COLUMNS = {"_batch_id", "_extracted_at"}  # the run's own stamp and clock
COMPARED_ZONES = ("raw/sources", "raw/clean", "raw/quarantine", "raw/unified", "public")


def _rows_fingerprint(table: pa.Table) -> str:
    """SHA-256 of a partition's rows in a canonical order, without the run's stamp."""
    table = table.drop_columns([c for c in table.column_names if c in RUN_COLUMNS])
    frame = table.select(sorted(table.column_names)).to_pandas().astype("string")
    frame = frame.fillna("\x00").sort_values(list(frame.columns)).reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def _task_pids(settings: LakeSettings, run_id: str) -> set[int]:
    """The processes the run's task instances ran in, as Airflow recorded them."""
    with sqlite3.connect(settings.var / "airflow" / "airflow.db") as db:
        rows = db.execute("SELECT pid FROM task_instance WHERE run_id = ?", (run_id,))
        return {pid for (pid,) in rows if pid is not None}  # a skipped task ran nowhere


def _night_in(home: Path, settings: LakeSettings, monkeypatch, parallel: bool) -> tuple:
    """One night into the lake under ``home``: its run id, and the fingerprint of every
    partition written."""
    monkeypatch.setenv("YIMEN_HOME", str(home))  # what the tasks read at their edge
    result = run_night(settings, DEMO_DATE, parallel=parallel)
    assert result.state == "success", result.failed_tasks
    pids = _task_pids(settings, result.run_id)
    if parallel:  # each task in a process of its own, forked by the executor's workers
        assert os.getpid() not in pids and len(pids) > 20
    else:
        assert pids == {os.getpid()}
    lake_settings = LakeSettings.from_env()
    lake = lake_settings.lake()
    store = CatalogStore(lake_settings.catalog_url)
    written = {}
    for part in store.partitions(ds=DEMO_DATE):
        if part.zone in COMPARED_ZONES and part.run_id == result.run_id:
            table = lake.read_partition(part.path)
            written[(part.zone, part.dataset_id)] = (table.num_rows, _rows_fingerprint(table))
    return result.run_id, written


def test_a_concurrent_night_writes_what_a_sequential_night_writes(
    departments, session_settings: LakeSettings, tmp_path: Path, monkeypatch
) -> None:
    """The concurrent night also meets a busy heavy-step lock: every delivery counts as
    heavy there, and another process holds the lock until Airflow has rescheduled a
    validation. The validations that found it busy gave their executor slots back
    (rescheduled, not waiting inside a task), none ran while the other process held the
    lock, and a rescheduled task's recorded time starts at the try that ran."""
    monkeypatch.setenv("YIMEN_DEPARTMENTS_DIR", str(session_settings.departments_dir))
    _, sequential = _night_in(tmp_path / "sequential", session_settings, monkeypatch, False)

    monkeypatch.setenv("YIMEN_HEAVY_STEP_ROWS", "1")
    home = tmp_path / "concurrent"
    airflow_db = session_settings.var / "airflow" / "airflow.db"
    with sqlite3.connect(airflow_db) as db:  # before any fork: this process, no thread
        before = db.execute("SELECT count(*) FROM task_reschedule").fetchone()[0]
    holder = lock_held_elsewhere(  # another night's heavy step, until a task gave way
        home / "var" / "tmp" / "heavy-step.lock",
        release_when=(airflow_db, f"SELECT count(*) > {before} FROM task_reschedule"),
    )
    run_id, concurrent = _night_in(home, session_settings, monkeypatch, True)
    released = datetime.fromisoformat(holder.stdout.readline().strip())
    holder.wait()

    zones = {zone for zone, _ in sequential}
    assert {"raw/sources", "raw/clean", "raw/unified", "public"} <= zones
    assert len(sequential) >= 3 * len(departments.rows)
    assert concurrent == sequential
    with sqlite3.connect(airflow_db) as db:
        rescheduled = db.execute(
            """SELECT ti.task_id, min(r.start_date), ti.start_date FROM task_reschedule r
               JOIN task_instance ti ON ti.id = r.ti_id WHERE ti.run_id = ? GROUP BY ti.id""",
            (run_id,),
        ).fetchall()
        validations = db.execute(
            """SELECT end_date FROM task_instance
               WHERE run_id = ? AND task_id LIKE '%.validate' AND state = 'success'""",
            (run_id,),
        ).fetchall()
    assert rescheduled and all(task.endswith(".validate") for task, _, _ in rescheduled)
    for _, first_try, ran in rescheduled:  # its recorded time is the run, not the wait
        assert ran > first_try
    assert len(validations) == len(load_catalog().datasets)
    ended = [datetime.fromisoformat(e).replace(tzinfo=None) for (e,) in validations]
    assert min(ended) > released  # none validated beside the other process
