"""A night whose tasks run concurrently (LocalExecutor) writes what a sequential night writes.

The same session departments, two fresh lakes, one night each through the real Airflow:
``lake run``'s default (tasks handed to the LocalExecutor, two at a time, each in its own
process writing the shared SQLite catalog store) and every task one after the other in one
process. Every clean, quarantined, unified and public partition must hold the same rows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from catalog.store import CatalogStore
from etl.airflow_runner import run_night
from etl.settings import LakeSettings
from tests.helpers import DEMO_DATE

RUN_COLUMNS = {"_batch_id", "_extracted_at"}  # the run's own stamp and clock
COMPARED_ZONES = ("raw/sources", "raw/clean", "raw/quarantine", "raw/unified", "public")


def _rows_fingerprint(table: pa.Table) -> str:
    """SHA-256 of a partition's rows in a canonical order, without the run's stamp."""
    table = table.drop_columns([c for c in table.column_names if c in RUN_COLUMNS])
    table = table.select(sorted(table.column_names))
    text = table.cast(pa.schema([pa.field(n, pa.string()) for n in table.column_names]))
    text = pa.table([pc.fill_null(c, "\x00") for c in text.columns], names=text.column_names)
    text = text.sort_by([(n, "ascending") for n in text.column_names])
    digest = hashlib.sha256()
    for column in text.columns:
        for chunk in column.chunks:
            digest.update(pa.ipc.serialize_pandas(pa.table({"c": chunk}).to_pandas()).to_pybytes())
    return digest.hexdigest()


def _night_in(home: Path, settings: LakeSettings, monkeypatch, parallel: bool) -> dict:
    """One night into the lake under ``home``; the fingerprint of every partition written."""
    monkeypatch.setenv("YIMEN_HOME", str(home))  # what the tasks read at their edge
    result = run_night(settings, DEMO_DATE, parallel=parallel)
    assert result.state == "success", result.failed_tasks
    lake_settings = LakeSettings.from_env()
    lake = lake_settings.lake()
    store = CatalogStore(lake_settings.catalog_url)
    written = {}
    for part in store.partitions(ds=DEMO_DATE):
        if part.zone in COMPARED_ZONES and part.run_id == result.run_id:
            table = lake.read_partition(part.path)
            written[(part.zone, part.dataset_id)] = (table.num_rows, _rows_fingerprint(table))
    return written


def test_a_concurrent_night_writes_what_a_sequential_night_writes(
    departments, session_settings: LakeSettings, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("YIMEN_DEPARTMENTS_DIR", str(session_settings.departments_dir))
    sequential = _night_in(tmp_path / "sequential", session_settings, monkeypatch, False)
    concurrent = _night_in(tmp_path / "concurrent", session_settings, monkeypatch, True)
    zones = {zone for zone, _ in sequential}
    assert {"raw/sources", "raw/clean", "raw/unified", "public"} <= zones
    assert len(sequential) >= 3 * len(departments.rows)
    assert concurrent == sequential
