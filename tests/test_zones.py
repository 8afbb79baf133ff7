"""Partitions are atomic, manifested, replaceable, and private in the raw zone."""

from __future__ import annotations

import os
import stat
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from catalog.errors import PartitionError
from etl.zones import MANIFEST, Lake

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])


def _batches(n: int, start: int = 0) -> list[pa.RecordBatch]:
    return [
        pa.RecordBatch.from_pydict(
            {"id": [f"r{i}" for i in range(s, s + 100)], "n": list(range(s, s + 100))},
            schema=SCHEMA,
        )
        for s in range(start, start + n, 100)
    ]


def test_write_then_replace_same_date(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    path = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 28))
    first = lake.write_partition(path, _batches(1000), SCHEMA)
    assert first.rows == 1000 and lake.read_partition(path).num_rows == 1000
    second = lake.write_partition(path, _batches(300, start=5000), SCHEMA)
    table = lake.read_partition(path)
    assert second.rows == table.num_rows == 300
    assert table.column("id")[0].as_py() == "r5000"
    assert first.fingerprint != second.fingerprint
    siblings = os.listdir(Path(path).parent)
    assert siblings == ["dt=2026-11-28"], "no temp or old folders are left behind"


def test_failed_write_leaves_previous_partition_untouched(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    path = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 28))
    lake.write_partition(path, _batches(200), SCHEMA)

    def broken():
        yield from _batches(100)
        raise RuntimeError("source went away mid-read")

    with pytest.raises(RuntimeError):
        lake.write_partition(path, broken(), SCHEMA)
    assert lake.read_partition(path).num_rows == 200
    assert os.listdir(Path(path).parent) == ["dt=2026-11-28"]


def test_empty_delivery_is_a_zero_row_partition_with_schema(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    path = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 28))
    manifest = lake.write_partition(path, iter([]), SCHEMA)
    table = lake.read_partition(path)
    assert manifest.rows == 0 and table.schema == SCHEMA


def test_partition_without_manifest_is_not_read(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    path = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 28))
    lake.write_partition(path, _batches(100), SCHEMA)
    os.remove(os.path.join(path, MANIFEST))
    with pytest.raises(PartitionError, match="no manifest"):
        lake.read_partition(path)


def test_private_partition_is_not_world_readable(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    path = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 28))
    lake.write_partition(path, _batches(100), SCHEMA, private=True)
    folders = [str(tmp_path / "lake" / "raw"), str(tmp_path / "lake" / "raw" / "sources" / "x")]
    for entry in [path, *folders, *(os.path.join(path, f) for f in os.listdir(path))]:
        assert not os.stat(entry).st_mode & (stat.S_IROTH | stat.S_IXOTH), entry


def test_leftovers_of_a_crashed_write_are_removed_by_the_next_one(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    path = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 28))
    lake.write_partition(path, _batches(100), SCHEMA)
    for leftover in ("dt=2026-11-28.tmp-dead00000000", "dt=2026-11-28.old-dead00000000"):
        (Path(path).parent / leftover).mkdir()
        (Path(path).parent / leftover / "part-00000.parquet").write_text("half written")
    (Path(path).parent / "dt=2026-11-29").mkdir()  # another date is not a leftover
    lake.write_partition(path, _batches(200), SCHEMA)
    assert sorted(os.listdir(Path(path).parent)) == ["dt=2026-11-28", "dt=2026-11-29"]
    assert lake.read_partition(path).num_rows == 200
