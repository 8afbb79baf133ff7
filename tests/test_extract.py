"""Extraction of every source kind into the raw zone: complete, unchanged, idempotent."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import create_engine, text

from catalog.definitions import load_catalog
from catalog.errors import SourceError
from catalog.store import CatalogStore
from etl.connections import SourceConnection
from etl.extract import extract_to_raw
from etl.readers import drop_file
from etl.settings import LakeSettings
from etl.zones import METADATA_FIELDS, RAW_SOURCES
from tests.helpers import (
    DEMO_DATE,
    busy_departments,
    connections,
    postgres_url,
    with_control_file,
)

CATALOG = load_catalog()


def extract(
    settings: LakeSettings, departments_dir: Path, dataset_id: str, ds: date, run: str = "test-run"
):
    dataset = CATALOG.dataset(dataset_id)
    return extract_from(
        settings, dataset_id, connections(departments_dir)[dataset.source.connection_id], ds, run
    )


def extract_from(
    settings: LakeSettings,
    dataset_id: str,
    conn: SourceConnection,
    ds: date = DEMO_DATE,
    run: str = "t",
):
    """Extract one dataset through the given connection into the test's own lake."""
    return extract_to_raw(
        CATALOG.dataset(dataset_id),
        conn,
        ds,
        lake=settings.lake(),
        store=CatalogStore(settings.catalog_url),
        batch_id=run,
    )


def delivered(departments_dir: Path, dataset_id: str, ds: date) -> pd.DataFrame:
    """Read a delivery independently of the lake's readers (pandas / SQLAlchemy)."""
    dataset = CATALOG.dataset(dataset_id)
    conn = connections(departments_dir)[dataset.source.connection_id]
    src = dataset.source
    if src.kind == "sql":
        with create_engine(conn.sqlalchemy_url()).connect() as c:
            return pd.read_sql(text(f"SELECT * FROM {src.table}"), c, dtype=str)
    path = drop_file(conn, src.path or "", ds)
    if src.kind == "csv":
        return pd.read_csv(
            path, encoding=src.encoding, dtype=str, keep_default_na=False, na_values=[""]
        )
    if src.kind == "jsonl":
        return pd.read_json(path, lines=True, dtype=False).astype("string")
    return pd.read_excel(path, engine="calamine", dtype=str)


def _normalise(df: pd.DataFrame, columns: list[str], key: list[str]) -> pd.DataFrame:
    out = df[columns].astype("string").fillna("<null>")
    return out.sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize("dataset_id", [d.id for d in CATALOG.datasets])
def test_raw_partition_holds_exactly_what_was_delivered(
    dataset_id: str, departments, settings: LakeSettings
) -> None:
    result = extract(settings, departments.out_dir, dataset_id, DEMO_DATE)
    source = delivered(departments.out_dir, dataset_id, DEMO_DATE)
    raw = settings.lake().read_partition(result.path).to_pandas()
    dataset = CATALOG.dataset(dataset_id)
    assert result.rows == len(source) == len(raw) == departments.rows[dataset_id] > 0
    assert list(raw.columns) == dataset.field_names + [f.name for f in METADATA_FIELDS]
    pd.testing.assert_frame_equal(
        _normalise(raw, dataset.field_names, dataset.key),
        _normalise(source, dataset.field_names, dataset.key),
    )
    assert sorted(raw["_row_number"]) == list(range(1, len(raw) + 1))
    assert set(raw["_source"]) == {dataset_id} and set(raw["_batch_id"]) == {"test-run"}


def test_gbk_text_survives_extraction_exactly(departments, settings: LakeSettings) -> None:
    """Every GBK value arrives as the department's system holds it, character for character.

    (Checking only that names hold some Chinese character would pass mojibake: 张三 read
    wrongly is 寮犱笁, Chinese too. Mixed encodings inside one file are validation's job:
    tests/test_validate.py::test_text_in_another_encoding_or_with_a_nul_is_quarantined.)
    """
    from simulator.build import STATE_DIR

    result = extract(settings, departments.out_dir, "renshe.insured_person", DEMO_DATE)
    raw = settings.lake().read_partition(result.path).to_pandas()
    system = pd.read_parquet(departments.out_dir / STATE_DIR / "renshe.insured_person.parquet")
    columns = ["insured_no", "name", "employer_name", "insurance_type", "status"]
    got, held = (
        _normalise(raw, columns, ["insured_no"]),
        _normalise(system, columns, ["insured_no"]),
    )
    assert len(got) == len(held) > 0
    pd.testing.assert_frame_equal(got, held)


@pytest.mark.skipif(postgres_url() is None, reason="no test PostgreSQL (make test starts one)")
def test_public_security_is_read_from_postgresql(departments) -> None:
    conn = connections(departments.out_dir)["gongan_db"]
    assert conn.conn_type == "postgres"
    assert conn.sqlalchemy_url().drivername == "postgresql+psycopg"


def test_rerunning_a_date_replaces_only_that_partition(departments, settings: LakeSettings) -> None:
    first = extract(settings, departments.out_dir, "zhijian.org_code", DEMO_DATE, run="r1")
    other_day = DEMO_DATE - timedelta(days=1)
    other_dir = Path(
        settings.lake().dataset_partition(
            RAW_SOURCES, CATALOG.dataset("zhijian.org_code"), other_day
        )
    )
    other_dir.mkdir(parents=True)
    (other_dir / "keep.txt").write_text("untouched")
    again = extract(settings, departments.out_dir, "zhijian.org_code", DEMO_DATE, run="r2")
    lake = settings.lake()
    table = lake.read_partition(again.path)
    assert again.rows == first.rows == table.num_rows
    assert set(table.column("_batch_id").to_pylist()) == {"r2"}
    assert (other_dir / "keep.txt").read_text() == "untouched"
    assert sorted(p.name for p in Path(again.path).parent.iterdir()) == [
        f"dt={other_day}",
        f"dt={DEMO_DATE}",
        "metadata",  # the Iceberg table's metadata beside its dt= folders
    ]
    parts = CatalogStore(settings.catalog_url).partitions(ds=DEMO_DATE)
    assert [(p.dataset_id, p.run_id) for p in parts] == [("zhijian.org_code", "r2")]


@pytest.fixture
def two_days(tmp_path: Path):
    """Departments at day 1, then advanced one day with plenty of changes."""
    out = busy_departments(tmp_path)
    return out


def test_incremental_extraction_picks_up_exactly_the_changed_rows(
    two_days: Path, settings: LakeSettings
) -> None:
    import simulator

    day1 = extract(settings, two_days, "gongan.population", DEMO_DATE)
    assert day1.low_watermark is None and day1.rows > 0
    changes = simulator.advance_day(two_days)
    day2_date = DEMO_DATE + timedelta(days=1)
    day2 = extract(settings, two_days, "gongan.population", day2_date)
    # the simulator's own account of the day: updates, inserts and status-flag deletions
    expected = sum(
        changes.__dict__[k]["gongan.population"] for k in ("updates", "inserts", "deletes")
    )
    assert 0 < day2.rows == expected < day1.rows
    raw = settings.lake().read_partition(day2.path).to_pandas()
    assert raw["person_no"].is_unique
    assert raw["updated_at"].str.startswith(day2_date.isoformat()).all()
    assert (raw["status"] == "注销").sum() == changes.deletes["gongan.population"]
    manifest = settings.lake().read_manifest(day2.path)
    assert manifest.extra["low_watermark"] == day1.high_watermark
    assert manifest.extra["high_watermark"] == raw["updated_at"].max() == day2.high_watermark
    for dataset in CATALOG.datasets:  # updated rows keep missing values as NULL, not "None"
        if dataset.source.kind == "sql":
            changed_rows = extract(settings, two_days, dataset.id, day2_date).path
            table = settings.lake().read_partition(changed_rows).to_pandas()
            assert not table.isin(["None", "nan", "<NA>"]).any().any(), dataset.id
    # snapshot drops: the new day's file is read whole, deletions are simply absent
    snap = extract(settings, two_days, "renshe.insured_person", day2_date)
    assert snap.rows == len(delivered(two_days, "renshe.insured_person", day2_date))
    assert snap.rows == changes.rows["renshe.insured_person"]


def test_reruns_read_their_own_window_even_after_later_nights(
    two_days: Path, settings: LakeSettings
) -> None:
    import simulator

    day1 = extract(settings, two_days, "gongan.population", DEMO_DATE)
    simulator.advance_day(two_days)
    day2_date = DEMO_DATE + timedelta(days=1)
    day2 = extract(settings, two_days, "gongan.population", day2_date)
    simulator.advance_day(two_days)  # day 3 changes exist in the source before the reruns
    again1 = extract(settings, two_days, "gongan.population", DEMO_DATE, run="rerun-1")
    again2 = extract(settings, two_days, "gongan.population", day2_date, run="rerun-2")
    day3 = extract(settings, two_days, "gongan.population", day2_date + timedelta(days=1))
    # each date keeps its window; day 3 starts where day 2 ended
    assert (again1.low_watermark, again1.high_watermark) == (None, day1.high_watermark)
    assert (again2.low_watermark, again2.high_watermark) == (
        day2.low_watermark,
        day2.high_watermark,
    )
    assert day3.low_watermark == day2.high_watermark and day3.rows > 0
    # no gap, no overlap: every current source row is in exactly one night's partition
    lake = settings.lake()
    nights = [
        lake.read_partition(r.path).column("person_no").to_pylist() for r in (again1, again2, day3)
    ]
    everything = delivered(two_days, "gongan.population", day2_date)["person_no"]
    assert sum(len(n) for n in nights) == len(everything)
    assert set().union(*nights) == set(everything)


def test_a_malformed_watermark_value_does_not_stall_incremental_reads(
    two_days: Path, settings: LakeSettings
) -> None:
    from sqlalchemy import create_engine, text

    db = connections(two_days)["gongan_db"].sqlalchemy_url()
    with create_engine(db).begin() as conn:  # a slashed date, and a clock far ahead
        conn.execute(
            text(
                "UPDATE population SET updated_at = '2026/11/28 09:00:00' "
                "WHERE person_no = (SELECT min(person_no) FROM population)"
            )
        )
        conn.execute(
            text(
                "UPDATE population SET updated_at = '2099-01-01 00:00:00' "
                "WHERE person_no = (SELECT min(person_no) FROM population WHERE person_no > "
                "(SELECT min(person_no) FROM population))"
            )
        )
    day1 = extract(settings, two_days, "gongan.population", DEMO_DATE)
    assert day1.high_watermark.startswith("2026-11-")  # not "2026/…", not 2099
    with create_engine(db).begin() as conn:
        conn.execute(
            text(
                "UPDATE population SET updated_at = '2026-11-29 08:00:00' "
                "WHERE person_no = (SELECT max(person_no) FROM population)"
            )
        )
    day2 = extract(settings, two_days, "gongan.population", DEMO_DATE + timedelta(days=1))
    keys = set(settings.lake().read_partition(day2.path).column("person_no").to_pylist())
    # the new change, and the two odd rows read again: never lost, never a stalled night
    assert len(keys) == 3


def test_missing_drop_file_is_one_clear_line(departments, settings: LakeSettings) -> None:
    with pytest.raises(SourceError) as err:
        extract(settings, departments.out_dir, "weiji.health_record", DEMO_DATE - timedelta(7))
    message = str(err.value)
    assert "weiji.health_record: no delivery for" in message and "health_record_" in message
    assert "\n" not in message


def test_unreachable_database_is_one_clear_line(settings: LakeSettings, tmp_path: Path) -> None:
    dataset = CATALOG.dataset("dishui.taxpayer")
    missing = SourceConnection(
        "dishui_db",
        "postgres",
        host="127.0.0.1",
        port=1,
        login="x",
        password="secret",
        schema="nope",
    )
    with pytest.raises(SourceError) as err:
        extract_from(settings, dataset.id, missing)
    message = str(err.value)
    assert message.startswith("dishui.taxpayer: cannot read postgresql+psycopg://x:***@127.0.0.1:1")
    assert "secret" not in message and "\n" not in message


def test_file_in_another_encoding_than_declared_is_one_clear_line(
    departments, settings: LakeSettings, tmp_path: Path
) -> None:
    conn = connections(departments.out_dir)["renshe_drop"]
    gbk_file = drop_file(conn, CATALOG.dataset("renshe.insured_person").source.path, DEMO_DATE)
    folder = tmp_path / "zhijian"
    folder.mkdir()
    # a GBK file delivered where UTF-8 (with BOM) is declared
    target = drop_file(
        SourceConnection("zhijian_drop", "fs", extra={"path": str(folder)}),
        CATALOG.dataset("zhijian.org_code").source.path,
        DEMO_DATE,
    )
    header = "org_code,name,org_type,legal_rep_name,address,issued_date,valid_until,updated_at\n"
    target.write_bytes(header.encode() + gbk_file.read_bytes().split(b"\n", 1)[1])
    with_control_file(target, departments.rows["renshe.insured_person"])
    drop = SourceConnection("zhijian_drop", "fs", extra={"path": str(folder)})
    with pytest.raises(SourceError, match=r"zhijian.org_code: cannot read .*org_code_\d+\.csv"):
        extract_from(settings, "zhijian.org_code", drop)


def test_unknown_connection_id_is_one_clear_line() -> None:
    from catalog.errors import ConnectionNotFound
    from etl.connections import lookup_airflow_connection

    with pytest.raises(ConnectionNotFound) as err:
        lookup_airflow_connection("no_such_system")
    message = str(err.value)
    assert message.startswith("connection 'no_such_system' is not defined")
    assert "AIRFLOW_CONN_NO_SUCH_SYSTEM" in message and "\n" not in message


def test_connections_resolve_through_airflow(departments) -> None:
    from etl.connections import lookup_airflow_connection

    drop = lookup_airflow_connection("renshe_drop")
    assert drop.folder() == departments.out_dir.resolve() / "renshe"
    db = lookup_airflow_connection("dishui_db")
    assert db.sqlalchemy_url().drivername == "sqlite"


@pytest.mark.skipif(postgres_url() is None, reason="no test PostgreSQL (make test starts one)")
def test_typed_database_columns_arrive_as_canonical_text(settings: LakeSettings) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url())
    with create_engine(url).begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS taxpayer"))
        conn.execute(
            text(
                "CREATE TABLE taxpayer (taxpayer_id integer, tax_no text, taxpayer_name text, "
                "legal_rep_name text, phone text, registered_date date, industry text, "
                "status text, updated_at timestamptz)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO taxpayer VALUES (1, '91440703123456788M', '江门市华美有限公司', "
                "'陈大文', NULL, DATE '2017-02-23', '制造业', '正常', "
                "TIMESTAMPTZ '2026-11-28 02:30:05.123+00')"
            )
        )
    conn_info = SourceConnection(
        "dishui_db",
        "postgres",
        host=url.host,
        port=url.port,
        login=url.username,
        password=url.password,
        schema=url.database,
    )
    result = extract_from(settings, "dishui.taxpayer", conn_info)
    row = settings.lake().read_partition(result.path).to_pylist()[0]
    assert row["taxpayer_id"] == "1" and row["registered_date"] == "2017-02-23"
    assert row["updated_at"] == "2026-11-28 10:30:05"  # in Shanghai, whole seconds
    assert row["phone"] is None
    # the mark keeps the source's own precision and time zone, so the next night compares
    # exactly: a change at 05:00 UTC is read, one a few milliseconds earlier is not again
    assert result.high_watermark == "2026-11-28 02:30:05.123000+00:00"
    with create_engine(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO taxpayer (taxpayer_id, tax_no, taxpayer_name, status, updated_at) "
                "VALUES (2, 'x', '新公司', '正常', TIMESTAMPTZ '2026-11-28 05:00:00+00'), "
                "(3, 'y', '旧公司', '正常', TIMESTAMPTZ '2026-11-28 02:30:05.100+00')"
            )
        )
    night2 = extract_from(settings, "dishui.taxpayer", conn_info, DEMO_DATE + timedelta(days=1))
    ids = settings.lake().read_partition(night2.path).column("taxpayer_id").to_pylist()
    assert ids == ["2"]


def test_csv_text_that_looks_like_null_is_kept(
    departments, settings: LakeSettings, tmp_path: Path
) -> None:
    dataset = CATALOG.dataset("zhijian.org_code")
    folder = tmp_path / "zhijian"
    folder.mkdir()
    target = folder / f"org_code_{DEMO_DATE:%Y%m%d}.csv"
    target.write_text(
        ",".join(dataset.field_names) + "\n"
        "123456788,华美公司,企业法人,NULL,NA,,,2026-11-28 10:00:00\n",
        encoding="utf-8-sig",
    )
    with_control_file(target, 1)
    conn = SourceConnection("zhijian_drop", "fs", extra={"path": str(folder)})
    result = extract_from(settings, dataset.id, conn)
    row = settings.lake().read_partition(result.path).to_pylist()[0]
    assert (row["legal_rep_name"], row["address"], row["issued_date"]) == ("NULL", "NA", None)


TAXPAYER_ROW = [
    "91440703123456788M",
    "华美公司",
    "陈大文",
    "一般纳税人",
    "2017-02-23",
    "蓬江区税务局",
    "正常",
    "2026-11-28 10:00:00",
]


def _taxpayer_drop(folder: Path, rows: dict[int, list[str]]) -> SourceConnection:
    """A national-tax .xlsx drop with the catalog header and ``rows`` at the given sheet rows."""
    import xlsxwriter

    folder.mkdir()
    path = folder / f"taxpayer_{DEMO_DATE:%Y%m%d}.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet(CATALOG.dataset("guoshui.taxpayer").source.sheet)
    sheet.write_row(0, 0, CATALOG.dataset("guoshui.taxpayer").field_names)
    for number, row in rows.items():
        sheet.write_row(number, 0, row)
    book.close()
    with_control_file(path, len(rows))
    return SourceConnection("guoshui_drop", "fs", extra={"path": str(folder)})


def test_excel_row_wider_than_its_header_is_an_error(
    settings: LakeSettings, tmp_path: Path
) -> None:
    drop = _taxpayer_drop(tmp_path / "guoshui", {1: [*TAXPAYER_ROW, "多余"]})
    with pytest.raises(SourceError, match=r"row 2 has values beyond the 8 header columns"):
        extract_from(settings, "guoshui.taxpayer", drop)


def test_json_numbers_and_booleans_arrive_as_text(settings: LakeSettings, tmp_path: Path) -> None:

    dataset = CATALOG.dataset("weiji.health_record")
    folder = tmp_path / "weiji"
    folder.mkdir()
    record = {f: None for f in dataset.field_names}
    records = [
        record
        | {
            "record_no": "JK001",
            "name": "陈大文",
            "blood_type": 1,
            "clinic": True,
            "updated_at": "2026-11-28 10:00:00",
        },
        record
        | {
            "record_no": "JK002",
            "name": "李四",
            "blood_type": 2,
            "clinic": False,
            "updated_at": "2026-11-28 11:00:00",
        },
    ]
    lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    path = folder / f"health_record_{DEMO_DATE:%Y%m%d}.jsonl"
    path.write_text(lines, encoding="utf-8")
    with_control_file(path, len(records))
    drop = SourceConnection("weiji_drop", "fs", extra={"path": str(folder)})
    result = extract_from(settings, "weiji.health_record", drop)
    table = settings.lake().read_partition(result.path)
    assert table.schema.field("blood_type").type == pa.string()
    assert table.column("blood_type").to_pylist() == ["1", "2"]
    assert table.column("clinic").to_pylist() == ["true", "false"]
    assert table.column("name").to_pylist() == ["陈大文", "李四"]


def test_backfilling_a_date_before_the_first_load_reads_nothing_twice(
    two_days: Path, settings: LakeSettings
) -> None:
    first = extract(settings, two_days, "gongan.population", DEMO_DATE)
    before = extract(settings, two_days, "gongan.population", DEMO_DATE - timedelta(days=1))
    assert first.rows > 0 and before.rows == 0  # the first load already holds every row
    assert (before.low_watermark, before.high_watermark) == (first.high_watermark,) * 2


def test_excel_cells_arrive_as_the_text_they_show_in_every_batch(tmp_path: Path) -> None:
    """Typed cells become their text (a whole number without ``.0``), empty cells nulls,
    blank lines are skipped, and a value beyond the header names its sheet row, also in a
    later batch: the reader converts a chunk of rows column by column."""
    from etl.readers import ExcelReader

    typed = [12345, "华美公司", None, 3.5, "2020-01-02", "", "正常", "2026-11-28 08:00:00"]
    rows = {1: TAXPAYER_ROW, 2: typed, 4: TAXPAYER_ROW, 5: typed, 6: TAXPAYER_ROW}
    drop = _taxpayer_drop(tmp_path / "guoshui", rows)
    path = Path(drop.extra["path"]) / f"taxpayer_{DEMO_DATE:%Y%m%d}.xlsx"
    sheet = CATALOG.dataset("guoshui.taxpayer").source.sheet
    batches = list(ExcelReader("guoshui.taxpayer", path, sheet, batch_rows=2).batches())
    assert [b.num_rows for b in batches] == [2, 1, 2]  # sheet rows 2-3 | 5 (4 is blank) | 6-7
    got = pa.Table.from_batches(batches).to_pylist()
    shown = ["12345", "华美公司", None, "3.5", "2020-01-02", None, "正常", "2026-11-28 08:00:00"]
    expected = dict(zip(CATALOG.dataset("guoshui.taxpayer").field_names, shown, strict=True))
    assert got[1] == expected and got[3] == expected
    assert got[0]["tax_no"] == TAXPAYER_ROW[0] and got[0]["legal_rep_name"] == TAXPAYER_ROW[2]

    wide = _taxpayer_drop(tmp_path / "wide", {1: TAXPAYER_ROW, 2: TAXPAYER_ROW, 4: [*typed, 7]})
    path = Path(wide.extra["path"]) / f"taxpayer_{DEMO_DATE:%Y%m%d}.xlsx"
    reader = ExcelReader("guoshui.taxpayer", path, sheet, batch_rows=2)
    with pytest.raises(SourceError, match=r"row 5 has values beyond the 8 header columns"):
        list(reader.batches())


def test_blank_excel_rows_are_not_delivered_rows(settings: LakeSettings, tmp_path: Path) -> None:
    # sheet row 3 is left blank between the two taxpayers
    other = ["440703123456788", *TAXPAYER_ROW[1:]]
    drop = _taxpayer_drop(tmp_path / "guoshui", {1: TAXPAYER_ROW, 3: other})
    result = extract_from(settings, "guoshui.taxpayer", drop)
    table = settings.lake().read_partition(result.path)
    assert table.column("tax_no").to_pylist() == ["91440703123456788M", "440703123456788"]


def test_row_numbers_count_on_across_batches_in_delivery_order() -> None:
    """``_row_number`` is the delivered row's position from 1, whatever the batch sizes
    (change detection and the quarantine name rows by it)."""
    from etl.extract import _MetadataStamp

    stamp = _MetadataStamp("renshe.insured_person", "run-1")
    sizes = [3, 1, 0, 5]
    stamped = [stamp(pa.record_batch({"name": pa.array(["x"] * n, pa.string())})) for n in sizes]
    numbers = [n for b in stamped for n in b.column("_row_number").to_pylist()]
    assert numbers == list(range(1, sum(sizes) + 1))
    assert all(b.schema.field("_row_number").type == pa.int64() for b in stamped)
    assert stamped[-1].column_names == ["name", *(f.name for f in METADATA_FIELDS)]


def _csv_the_old_way(path: Path, reader) -> pa.Table:
    """The whole file decoded by pyarrow through Python's codec, then parsed."""
    import pyarrow.csv as pacsv

    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(
            use_threads=False, encoding=reader.codec, skip_rows=1, column_names=reader.columns
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in reader.columns},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_a_gbk_file_parsed_as_bytes_and_decoded_per_column_reads_as_decoded_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    """GBK-family CSVs are split as bytes and only the columns with non-ASCII bytes are
    decoded (etl/readers.py ``_decoded``): the values must be exactly those of decoding the
    file first, for ASCII columns, a few full-width values among ASCII ones, repeating
    values, names, quoted cells with commas and quotes, empty cells, across batches."""
    from etl import readers

    monkeypatch.setattr(readers, "BLOCK_SIZE", 4096)  # many batches
    lines = ["id,id_no,sex,name,note"]
    for i in range(3000):
        id_no = (
            f"44010119900101{i % 10000:04d}" if i % 97 else "４４０１０１１９９００１０１００１Ｘ"
        )
        sex = ["男", "女", ""][i % 3]
        name = ["张三", "欧阳娜娜", "李", "王小明", "喆"][i % 5] + str(i)
        note = ['"北京,朝阳"', '"他说""好"""', "", "plain", "·—～"][i % 5]
        lines.append(f"{i},{id_no},{sex},{name},{note}")
    if encoding == "gb18030":
        lines.append("3000,,男,𠀀𝄞,😀")  # four-byte GB18030 characters
    path = tmp_path / "drop.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    reader = readers.CsvReader("x.y", path, encoding, ["id", "id_no", "sex", "name", "note"])
    decoded = []  # the values that went through Python's codec
    joined_decoded = readers._joined_decoded
    monkeypatch.setattr(
        readers, "_joined_decoded", lambda v, c: decoded.append(len(v)) or joined_decoded(v, c)
    )
    batches = list(reader.batches())
    assert len(batches) > 3
    got = pa.Table.from_batches(batches)
    assert got.equals(_csv_the_old_way(path, reader))
    # names once each, the 31 full-width IDs, the others once per distinct value per batch
    assert 3000 + 31 <= sum(decoded) <= 3000 + 31 + 10 * len(batches) + 1
    assert got.column("sex").null_count == 1000 and got.column("note").null_count == 600


def test_a_value_that_is_not_gbk_names_its_row_and_column_not_its_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl import readers

    monkeypatch.setattr(readers, "BLOCK_SIZE", 4096)
    rows = [f"{i},张{i},男".encode("gbk") for i in range(2000)]
    rows[1500] = "1500,张".encode("gbk") + b"\xff\xfe,\xc4\xd0"  # bytes no GBK character has
    path = tmp_path / "drop.csv"
    path.write_bytes(b"id,name,sex\n" + b"\n".join(rows) + b"\n")
    reader = readers.CsvReader("x.y", path, "gbk", ["id", "name", "sex"])
    with pytest.raises(SourceError) as err:
        list(reader.batches())
    assert str(err.value) == f"x.y: {path} row 1502, name: not gbk as declared"
    # a repeating column: the first row holding the broken value
    rows[1500] = "1500,张1500".encode("gbk") + b",\xc4"
    path.write_bytes(b"id,name,sex\n" + b"\n".join(rows) + b"\n")
    with pytest.raises(SourceError, match=r"row 1502, sex: not gbk as declared$"):
        list(readers.CsvReader("x.y", path, "gbk", ["id", "name", "sex"]).batches())
