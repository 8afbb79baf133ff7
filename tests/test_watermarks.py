"""Rows with no ``updated_at`` are delivered every night and counted (decision 0009)."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pyarrow as pa

from catalog.definitions import load_catalog
from catalog.store import CatalogStore
from etl.cli import _print_night
from etl.connections import SourceConnection
from etl.extract import extract_to_raw
from etl.settings import LakeSettings
from etl.validate import validate_partition
from etl.zones import Lake
from tests.helpers import DEMO_DATE, connections

DATASET = load_catalog().dataset("dishui.taxpayer")
NO_MARK = "T-NO-UPDATED-AT"


def _rows(lake: Lake, path: str) -> list[dict]:
    """The rows a partition holds, whatever order the source returned them in."""
    table = lake.read_partition(path).drop_columns(["_batch_id", "_extracted_at", "_row_number"])
    return sorted(table.to_pylist(), key=lambda r: r["taxpayer_id"])


def test_rows_without_a_watermark_are_delivered_every_night_and_reruns_are_identical(
    departments, settings: LakeSettings, tmp_path: Path, capsys
) -> None:
    source = Path(connections(departments.out_dir)["dishui_db"].host)
    db = tmp_path / "dishui.db"
    shutil.copy(source, db)
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT count(*) FROM taxpayer").fetchone()[0] + 1
        conn.execute(
            "INSERT INTO taxpayer (taxpayer_id, tax_no, taxpayer_name, status, updated_at) "
            "VALUES (?, '91440703MA4UKL1X2P', '无时间公司', '正常', NULL)",
            (NO_MARK,),
        )
    conn_info = SourceConnection("dishui_db", "sqlite", host=str(db))
    lake, store = settings.lake(), CatalogStore(settings.catalog_url)

    def extract(ds, run):
        return extract_to_raw(DATASET, conn_info, ds, lake=lake, store=store, batch_id=run)

    first = extract(DEMO_DATE, "first")
    first_rows = _rows(lake, first.path)
    assert first.rows == total and first.null_watermark_rows == 1
    assert "1 with no updated_at" in first.summary()
    assert lake.read_manifest(first.path).extra["null_watermark_rows"] == 1
    # the first night's rerun reads its recorded window: the same rows, the NULL one too
    again = extract(DEMO_DATE, "rerun")
    assert again.rows == total and _rows(lake, again.path) == first_rows

    # a later night: one changed row, plus the row that still has no watermark
    later = DEMO_DATE + timedelta(days=1)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE taxpayer SET updated_at = ? WHERE taxpayer_id = "
            "(SELECT min(taxpayer_id) FROM taxpayer WHERE updated_at IS NOT NULL)",
            (f"{later} 09:00:00",),
        )
    night2 = extract(later, "later")
    ids = {r["taxpayer_id"] for r in _rows(lake, night2.path)}
    assert night2.rows == 2 and NO_MARK in ids and night2.null_watermark_rows == 1
    assert _rows(lake, extract(later, "later-rerun").path) == _rows(lake, night2.path)

    _print_night(settings, later, "later-rerun")  # the night's summary says so
    assert "dishui.taxpayer: 1 rows with no updated_at" in capsys.readouterr().out

    # counted and flagged: validation quarantines it (updated_at is required) every night
    result = validate_partition(DATASET, later, lake=lake, store=store, run_id="v")
    assert result.failures["updated_at:required"] == 1 and result.quarantined >= 1
    quarantined = lake.read_partition(
        lake.dataset_partition("raw/quarantine", DATASET, later)
    ).filter(pa.compute.equal(pa.compute.field("taxpayer_id"), NO_MARK))
    assert "updated_at is missing" in quarantined.column("_reason")[0].as_py()
