"""Real writer processes against the Iceberg raw zones: SIGKILLed at many points, or racing.

A night that dies anywhere — half-written data files, an Iceberg metadata file written but
not pointed at, one of clean/quarantine committed but not the other, every commit done but
the store's commit point not written — leaves a lake whose tables all load, whose readers
see the previous night, where a rerun gives the first run's rows, and whose orphan files
maintenance removes. A second writer of the same dataset and date fails in one line and
leaves the first writer's night whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa

from catalog.definitions import load_catalog
from etl.extract import extract_to_raw
from etl.validate import validate_partition
from etl.zones import RAW_CLEAN, RAW_QUARANTINE, RAW_SOURCES, Lake, _live_files
from tests.helpers import DEMO_DATE, REPO, connections

DATASET = load_catalog().dataset("gongshang.enterprise_registration")
ZONES = (RAW_SOURCES, RAW_CLEAN, RAW_QUARANTINE)
RUN_DEPENDENT = ["_batch_id", "_extracted_at"]  # what a rerun changes (and row order)


def _writer(lake: Lake, departments, run: str, *extra: str) -> subprocess.Popen:
    args = [str(lake.root), lake.catalog_url, str(departments.out_dir), DATASET.id]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.lake_writer", *args, DEMO_DATE.isoformat(), run, *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(marker: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the writer ended before its pause point: {proc.stderr.read()}")
        assert time.monotonic() < deadline, "the writer never reached its pause point"
        time.sleep(0.05)


def _night(lake: Lake, departments, run: str, tmp_path: Path) -> None:
    conn = connections(departments.out_dir)[DATASET.source.connection_id]
    extract_to_raw(DATASET, conn, DEMO_DATE, lake=lake, store=lake.store, batch_id=run)
    validate_partition(
        DATASET, DEMO_DATE, lake=lake, store=lake.store, run_id=run, work_dir=tmp_path / "w"
    )


def _state(lake: Lake) -> dict[str, str]:
    paths = {z: lake.dataset_partition(z, DATASET, DEMO_DATE) for z in ZONES}
    return {z: lake.read_manifest(p).fingerprint for z, p in paths.items()}


def _rows(lake: Lake, zone: str) -> pa.Table:
    table = lake.read_partition(lake.dataset_partition(zone, DATASET, DEMO_DATE))
    table = table.drop_columns([*RUN_DEPENDENT, "_row_number"])  # a source may reorder rows
    return table.sort_by([(c, "ascending") for c in table.column_names])


def _unreferenced(lake: Lake) -> list[str]:
    """Files under the raw tables' folders that no kept snapshot or metadata refers to."""
    found = []
    for identifier in lake.raw_tables():
        table = lake.iceberg.load_table(identifier)
        live = _live_files(table)
        for path in Path(table.location().removeprefix("file://")).rglob("*"):
            if path.is_file() and str(path) not in live:
                found.append(str(path))
    return found


KILL_POINTS = [  # (steps the writer runs, where it is killed)
    ("extract,validate", "extract:data"),
    ("extract,validate", "extract:metadata"),
    ("extract,validate", "extract:record"),
    ("validate", "validate:data"),
    ("validate", "validate:metadata"),
    ("validate", "validate:between"),
    ("validate", "validate:record"),
]


def test_writers_killed_anywhere_leave_the_previous_night(departments, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/catalog.db")
    _night(lake, departments, "first", tmp_path)
    before = _state(lake)
    first_rows = {z: _rows(lake, z) for z in ZONES}

    for steps, pause in KILL_POINTS:  # each kill lands on the debris of the ones before
        marker = tmp_path / f"paused-{pause.replace(':', '-')}"
        writer = _writer(
            lake, departments, "killed", "--steps", steps, "--pause", pause, str(marker)
        )
        _wait_for(marker, writer)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        assert writer.returncode == -signal.SIGKILL
        for identifier in lake.raw_tables():  # every table loads and scans
            lake.iceberg.load_table(identifier).scan().to_arrow()
        assert _state(lake) == before, f"killed at {pause}: readers see the previous night"
        for zone in ZONES:
            assert _rows(lake, zone).equals(first_rows[zone]), (pause, zone)
    leftovers = _unreferenced(lake)
    assert leftovers, "the killed writes left files behind for maintenance"

    _night(lake, departments, "rerun", tmp_path)
    for zone in ZONES:
        assert _rows(lake, zone).equals(first_rows[zone]), zone
    reports = lake.maintain(orphan_age=timedelta(0))
    assert sum(r.orphans_removed for r in reports) >= len(leftovers)
    assert _unreferenced(lake) == []
    for zone in ZONES:  # maintenance kept everything a reader follows
        assert _rows(lake, zone).equals(first_rows[zone]), zone


def test_a_second_writer_of_the_same_date_fails_and_removes_nothing(
    departments, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/catalog.db")
    conn = connections(departments.out_dir)[DATASET.source.connection_id]
    extract_to_raw(DATASET, conn, DEMO_DATE, lake=lake, store=lake.store, batch_id="raw")

    marker, release = tmp_path / "staged", tmp_path / "go"
    late = _writer(
        lake,
        departments,
        "late",
        "--steps",
        "validate",
        "--pause",
        "validate:commit",
        str(marker),
        str(release),
    )
    _wait_for(marker, late)  # the late writer has staged its files, not committed them
    early = _writer(lake, departments, "early", "--steps", "validate")
    assert early.wait() == 0, early.stderr.read()
    committed = _state(lake)
    kept = {z: _rows(lake, z) for z in (RAW_CLEAN, RAW_QUARANTINE)}
    release.write_text("go")
    assert late.wait() == 1
    errors = [line for line in late.stderr.read().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "another writer committed this date" in errors[0], errors
    assert _state(lake) == committed, "the early writer's night stands"
    for zone, rows in kept.items():
        assert _rows(lake, zone).equals(rows)
        record = lake.store.snapshot(zone, f"{DATASET.department}/{DATASET.code}", DEMO_DATE)
        assert record.run_id == "early"
    assert _unreferenced(lake) == [], "the late writer took its own staged files away"
