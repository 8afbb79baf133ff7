"""Raw partitions are Iceberg commits named by the store: atomic, replaceable, private."""

from __future__ import annotations

import os
import stat
import uuid
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from catalog.errors import PartitionError
from etl.zones import Lake
from tests.helpers import postgres_url

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])
DAY = date(2026, 11, 28)


def _lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/catalog.db")


def _batches(n: int, start: int = 0) -> list[pa.RecordBatch]:
    return [
        pa.RecordBatch.from_pydict(
            {"id": [f"r{i}" for i in range(s, s + 100)], "n": list(range(s, s + 100))},
            schema=SCHEMA,
        )
        for s in range(start, start + n, 100)
    ]


def _data_files(path: str) -> list[str]:
    return sorted(p.name for p in Path(path).iterdir())


def test_write_then_replace_same_date(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    path = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    first = lake.write_partition(path, _batches(1000), SCHEMA)
    assert first.rows == 1000 and lake.read_partition(path).num_rows == 1000
    second = lake.write_partition(path, _batches(300, start=5000), SCHEMA)
    table = lake.read_partition(path)
    assert second.rows == table.num_rows == 300
    assert table.column("id")[0].as_py() == "r5000"
    assert first.fingerprint != second.fingerprint
    manifest = lake.read_manifest(path)
    assert manifest.previous_snapshot_id not in (None, manifest.snapshot_id)
    assert lake.read_snapshot(path, manifest.previous_snapshot_id).num_rows == 1000
    siblings = os.listdir(Path(path).parent)
    assert sorted(siblings) == ["dt=2026-11-28", "metadata"], "the table's visible layout"


def test_only_columns_that_repeat_their_values_are_dictionary_encoded(tmp_path: Path) -> None:
    """Repeating columns get a Parquet dictionary, near-unique ones plain pages; the rows
    read back are the ones written, and equal rows written again give equal bytes."""
    import pyarrow.parquet as pq

    lake = _lake(tmp_path)
    path = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    schema = pa.schema([("id", pa.string()), ("sex", pa.string())])
    batch = pa.RecordBatch.from_pydict(
        {"id": [f"r{i}" for i in range(1000)], "sex": ["男", "女"] * 500}, schema=schema
    )
    first = lake.write_partition(path, [batch], schema)
    [data_file] = lake.local_files(path)
    columns = pq.ParquetFile(data_file).metadata.row_group(0)
    encodings = {columns.column(i).path_in_schema: columns.column(i).encodings for i in (0, 1)}
    assert "RLE_DICTIONARY" in encodings["sex"] and "RLE_DICTIONARY" not in encodings["id"]
    assert lake.read_partition(path).to_pylist() == pa.Table.from_batches([batch]).to_pylist()
    assert lake.write_partition(path, [batch], schema).fingerprint == first.fingerprint


def test_only_the_partition_column_has_statistics_and_iceberg_still_prunes_by_date(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Statistics no reader uses are not computed: the files carry them for ``dt`` alone,
    Iceberg's data files take their partition value from them and record no other bounds,
    pyiceberg warns about nothing, and each date still reads its own rows."""
    import pyarrow.parquet as pq

    lake = _lake(tmp_path)
    path = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    other = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 29))
    with caplog.at_level("WARNING"):
        lake.write_partition(path, _batches(1000), SCHEMA)
        lake.write_partition(other, _batches(200, start=7000), SCHEMA)
    assert not [r for r in caplog.records if "statistics" in r.getMessage()]
    [data_file] = lake.local_files(path)
    group = pq.ParquetFile(data_file).metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).is_stats_set for i in range(3)}
    assert stats == {"id": False, "n": False, "dt": True}
    table = lake.iceberg.load_table(lake.ref(path).identifier)
    files = [t.file for t in table.scan().plan_files()]
    assert sorted(str(f.partition[0]) for f in files) == sorted(
        str((d - date(1970, 1, 1)).days) for d in (DAY, date(2026, 11, 29))
    )
    dt_id = table.schema().find_field("dt").field_id
    assert all(set(f.lower_bounds) == {dt_id} for f in files)
    assert lake.read_partition(path).num_rows == 1000
    assert lake.read_partition(other).column("id")[0].as_py() == "r7000"


def test_other_dates_and_other_tables_are_untouched(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    day1 = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    day2 = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 29))
    lake.write_partition(day1, _batches(200), SCHEMA)
    lake.write_partition(day2, _batches(300), SCHEMA)
    lake.write_partition(day1, _batches(100, start=9000), SCHEMA)
    assert lake.read_partition(day2).num_rows == 300
    assert lake.read_partition(day1).column("id").to_pylist()[0] == "r9000"


def test_failed_write_leaves_previous_partition_untouched(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    path = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    lake.write_partition(path, _batches(200), SCHEMA)
    before = _data_files(path)

    def broken():
        yield from _batches(100)
        raise RuntimeError("source went away mid-read")

    with pytest.raises(RuntimeError):
        lake.write_partition(path, broken(), SCHEMA)
    assert lake.read_partition(path).num_rows == 200
    assert _data_files(path) == before, "the failed write's own files are removed"


def test_empty_delivery_is_a_zero_row_partition_with_schema(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    path = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    lake.write_partition(path, _batches(100), SCHEMA)
    manifest = lake.write_partition(path, iter([]), SCHEMA)
    table = lake.read_partition(path)
    assert manifest.rows == 0 and table.num_rows == 0 and table.schema == SCHEMA
    assert list(lake.partition_batches(path)) == []


def test_a_date_never_committed_is_missing_not_empty(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    path = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    assert lake.read_manifest(path) is None
    with pytest.raises(PartitionError, match="never committed"):
        lake.read_partition(path)


def test_staged_but_uncommitted_files_are_invisible(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    path = lake.partition_path("raw/clean", "x", "y", ds=DAY)
    lake.write_partition(path, _batches(100), SCHEMA)
    staged = lake.stage_partition(path, _batches(500), SCHEMA)
    assert lake.read_partition(path).num_rows == 100
    lake.discard([staged])
    assert lake.read_partition(path).num_rows == 100


def test_an_added_column_evolves_the_table_and_each_date_reads_its_own(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    day1 = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    day2 = lake.partition_path("raw/sources", "x", "y", ds=date(2026, 11, 29))
    lake.write_partition(day1, _batches(100), SCHEMA)
    wider = SCHEMA.append(pa.field("note", pa.string()))
    batch = pa.RecordBatch.from_pydict({"id": ["a"], "n": [1], "note": ["new"]}, schema=wider)
    lake.write_partition(day2, [batch], wider)
    assert lake.read_partition(day2).column_names == ["id", "n", "note"]
    assert lake.read_partition(day1).column_names == ["id", "n"], "no column it never had"
    narrower = pa.schema([("id", pa.string())])
    lake.write_partition(day1, [pa.RecordBatch.from_pydict({"id": ["z"]})], narrower)
    assert lake.read_partition(day1).column_names == ["id"], "a dropped column stays dropped"


def test_catalog_types_and_field_docs_reach_iceberg(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    schema = pa.schema(
        [
            pa.field("amount", pa.decimal128(18, 2), metadata={"level": "restricted"}),
            pa.field("born", pa.date32(), metadata={"level": "conditional", "pii": "birth"}),
            pa.field("seen", pa.timestamp("ms")),
            pa.field("at", pa.timestamp("us", tz="UTC")),
        ]
    )
    path = lake.partition_path("raw/clean", "x", "typed", ds=DAY)
    lake.write_partition(path, [], schema)
    table = lake.iceberg.load_table(("raw_clean", "x", "typed"))
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types == {
        "amount": "decimal(18, 2)",
        "born": "date",
        "seen": "timestamp",
        "at": "timestamptz",
        "dt": "date",
    }
    assert table.schema().find_field("born").doc == "level=conditional; pii=birth"
    assert [f.name for f in table.spec().fields] == ["dt"]
    assert table.location() == "file://" + str(tmp_path / "lake" / "raw" / "clean" / "x" / "typed")


def test_private_partition_is_not_world_readable(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    path = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    lake.write_partition(path, _batches(100), SCHEMA, private=True)
    root = tmp_path / "lake"
    entries = [root / "raw", root / "raw" / "sources" / "x", *(root / "raw").rglob("*")]
    for entry in entries:
        assert not entry.stat().st_mode & (stat.S_IROTH | stat.S_IXOTH), entry


def test_the_old_folder_layout_is_refused_with_a_way_out(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    path = lake.partition_path("raw/sources", "x", "y", ds=DAY)
    Path(path).mkdir(parents=True)
    (Path(path) / "part-00000.parquet").write_bytes(b"PAR1")
    (Path(path) / "_manifest.json").write_text("{}")
    with pytest.raises(PartitionError, match="old folder layout.*lake demo") as read:
        lake.read_manifest(path)
    with pytest.raises(PartitionError, match="lake simulate") as write:
        lake.write_partition(path, _batches(100), SCHEMA)
    assert "\n" not in str(read.value) + str(write.value)
    assert (Path(path) / "part-00000.parquet").read_bytes() == b"PAR1", "nothing is touched"


def test_consumer_zones_stay_plain_folders_with_a_manifest(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    path = lake.partition_path("public", "stats", ds=DAY)
    manifest = lake.write_partition(path, _batches(300), SCHEMA)
    assert manifest.rows == lake.read_partition(path).num_rows == 300
    assert _data_files(path) == ["_manifest.json", "part-00000.parquet"]


@pytest.mark.skipif(postgres_url() is None, reason="no test PostgreSQL (make test starts one)")
def test_iceberg_catalog_and_commit_points_share_one_postgresql_database(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"yimen_catalog_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        make_url(postgres_url()).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url()).set(database=name).render_as_string(hide_password=False)
    try:
        lake = Lake(str(tmp_path / "lake"), url)
        path = lake.partition_path("raw/clean", "x", "y", ds=DAY)
        lake.write_partition(path, _batches(200), SCHEMA, run_id="one")
        lake.write_partition(path, _batches(300), SCHEMA, run_id="two")
        assert lake.read_partition(path).num_rows == 300
        with lake.store.engine.connect() as conn:
            pointer = conn.execute(text("SELECT table_namespace, table_name FROM iceberg_tables"))
            assert pointer.all() == [("raw_clean.x", "y")]
            record = conn.execute(text("SELECT run_id, rows FROM lake_snapshots")).all()
            assert record == [("two", 300)]
        lake.store.engine.dispose()
        lake.iceberg.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_writers_of_other_dates_both_commit_writers_of_one_date_do_not(tmp_path: Path) -> None:
    one, two = _lake(tmp_path), _lake(tmp_path)  # as two processes would see the lake
    day1 = one.partition_path("raw/clean", "x", "y", ds=DAY)
    day2 = one.partition_path("raw/clean", "x", "y", ds=date(2026, 11, 29))
    one.write_partition(day1, _batches(100), SCHEMA)
    staged1 = one.stage_partition(day1, _batches(200), SCHEMA)
    staged2 = two.stage_partition(day2, _batches(300), SCHEMA)
    rival = two.stage_partition(day1, _batches(400), SCHEMA)
    one.commit([staged1], run_id="one")
    two.commit([staged2], run_id="two")  # a stale base, another date: retried, committed
    with pytest.raises(PartitionError, match="another writer committed this date") as lost:
        two.commit([rival], run_id="rival")
    assert "\n" not in str(lost.value)
    assert one.read_partition(day1).num_rows == 200 and one.read_partition(day2).num_rows == 300
    assert all(Path(f.file_path.removeprefix("file://")).exists() for f in staged1.data_files)
    assert not any(Path(f.file_path.removeprefix("file://")).exists() for f in rival.data_files)


def test_maintenance_expires_what_no_night_needs_and_removes_its_files(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    lake = _lake(tmp_path)
    day1 = lake.partition_path("raw/clean", "x", "y", ds=DAY)
    day2 = lake.partition_path("raw/clean", "x", "y", ds=date(2026, 11, 29))
    lake.write_partition(day2, _batches(100, start=5000), SCHEMA)
    for start in (0, 1000, 2000):  # the first night and two reruns
        lake.write_partition(day1, _batches(100, start=start), SCHEMA)
    replaced = lake.read_manifest(day1).previous_snapshot_id
    assert lake.read_snapshot(day1, replaced).column("id")[0].as_py() == "r1000"
    assert len(_data_files(day1)) == 3

    soon = lake.maintain(orphan_age=timedelta(0))  # within retention: only orphans may go
    assert sum(r.snapshots_expired for r in soon) == 0
    assert lake.read_snapshot(day1, replaced).num_rows == 100

    later = datetime.now(UTC) + timedelta(days=15)  # past the default 14 nights
    reports = lake.maintain(lambda _table: 14, now=later, orphan_age=timedelta(0))
    assert sum(r.snapshots_expired for r in reports) > 0
    assert len(_data_files(day1)) == 1, "files only expired snapshots held are removed"
    assert lake.read_partition(day1).column("id")[0].as_py() == "r2000"
    assert lake.read_partition(day2).column("id")[0].as_py() == "r5000", "named: never expired"
    with pytest.raises(PartitionError, match="expired"):
        lake.read_snapshot(day1, replaced)
