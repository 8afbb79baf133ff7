"""The delivery contract, through the real extractor: control files, headers, volume.

Every case of issue 8's "What was seen" points 1 and 2 (and the duplicated header of
point 7, in tests/test_validate.py) is reproduced with the hostile-delivery generator and
must fail that dataset with one line that names the file and quotes nothing delivered.
The whole-night versions (Airflow, `lake accept` end to end) are in tests/test_dags.py.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from catalog.definitions import load_catalog
from catalog.errors import BreakerTripped, SourceError
from etl.connections import SourceConnection
from etl.contract import (
    LastGoodNight,
    control_path,
    header_report,
    looks_like_data,
    volume_problem,
)
from etl.extract import extract_to_raw
from etl.validate import validate_partition
from etl.zones import RAW_SOURCES, Lake
from tests.helpers import DEMO_DATE, drop_connection, hostile_copy, usccs, with_control_file

CATALOG = load_catalog()
NEXT = DEMO_DATE + timedelta(days=1)
PERSONAL = ("陈大文", "13812345678")  # the notes cell of the hostile workbook


class Lakeside:
    """One private lake and store, and extraction + validation into them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lake = Lake(str(root / "lake"), f"sqlite:///{root / 'catalog.db'}")
        self.store = self.lake.store

    def extract(self, dataset_id: str, conn: SourceConnection, ds: date = DEMO_DATE):
        return extract_to_raw(
            CATALOG.dataset(dataset_id), conn, ds, lake=self.lake, store=self.store, batch_id="c"
        )

    def night(self, dataset_id: str, conn: SourceConnection, ds: date = DEMO_DATE):
        """Extract and validate: a good night the volume check can compare with."""
        self.extract(dataset_id, conn, ds)
        return validate_partition(
            CATALOG.dataset(dataset_id),
            ds,
            lake=self.lake,
            store=self.store,
            run_id=f"night-{ds}",
            work_dir=self.root / "tmp",
        )

    def raw_rows(self, dataset_id: str, ds: date = DEMO_DATE) -> int | None:
        path = self.lake.dataset_partition(RAW_SOURCES, CATALOG.dataset(dataset_id), ds)
        manifest = self.lake.read_manifest(path)
        return None if manifest is None else manifest.rows


@pytest.fixture
def side(tmp_path: Path) -> Lakeside:
    return Lakeside(tmp_path)


def _one_clean_line(message: str, dataset_id: str) -> None:
    assert message.startswith(dataset_id) and "\n" not in message
    assert not re.search(r"[0-9]{17}[0-9X]|1[3-9][0-9]{9}", message), "no IDs or phones"
    assert not any(p in message for p in PERSONAL)


def _copy_night(departments_dir: Path, work: Path, dataset_id: str, ds: date) -> None:
    """The DEMO_DATE drop (and its control file) delivered again as the drop of ``ds``."""
    dataset = CATALOG.dataset(dataset_id)
    folder = work / dataset.department
    shutil.copytree(departments_dir, work, dirs_exist_ok=True)
    for suffix in ("", ".ctl"):
        name = dataset.source.path or ""
        shutil.copy(
            folder / (name.format(ds_nodash=f"{DEMO_DATE:%Y%m%d}") + suffix),
            folder / (name.format(ds_nodash=f"{ds:%Y%m%d}") + suffix),
        )


# --- 1. files cut at a row boundary -------------------------------------------------------


@pytest.mark.parametrize("dataset_id", ["renshe.insured_person", "weiji.health_record"])
def test_a_file_cut_at_a_row_boundary_fails_and_the_last_good_raw_stays(
    departments, side: Lakeside, tmp_path: Path, dataset_id: str
) -> None:
    """Issue 8, seen 1: the GBK CSV and the JSON Lines file cut cleanly after 60 % of the
    rows loaded as a smaller snapshot and the night said success."""
    full = departments.rows[dataset_id]
    good = side.extract(dataset_id, drop_connection(departments.out_dir, dataset_id))
    assert good.rows == full
    cut = hostile_copy(departments.out_dir, tmp_path / "cut", dataset_id, "cut_at_row")
    with pytest.raises(SourceError, match=r"does not match its control file .*SHA-256 differs"):
        side.extract(dataset_id, cut)
    assert side.raw_rows(dataset_id) == full, "the last good raw partition stays"


@pytest.mark.parametrize(
    "dataset_id", ["renshe.insured_person", "weiji.health_record", "guoshui.taxpayer"]
)
def test_a_control_file_that_counts_more_rows_than_the_file_holds_fails(
    departments, side: Lakeside, tmp_path: Path, dataset_id: str
) -> None:
    """The checksum fits the cut file, the row count is the full export's (10,000 said,
    6,002 delivered): the row count, checked after the last row, stops it."""
    full = departments.rows[dataset_id]
    cut = hostile_copy(
        departments.out_dir, tmp_path / "cut", dataset_id, "cut_at_row", control="wrong_rows"
    )
    with pytest.raises(SourceError) as err:
        side.extract(dataset_id, cut)
    message = str(err.value)
    assert f"holds {int(full * 0.6):,} rows, its control file" in message
    assert f"says {full:,}" in message and ".ctl" in message
    _one_clean_line(message, dataset_id)
    assert side.raw_rows(dataset_id) is None, "nothing committed"
    assert not list((tmp_path / "lake").rglob("*.tmp-*")), "nothing staged is left behind"


def test_a_missing_required_control_file_is_one_line(
    departments, side: Lakeside, tmp_path: Path
) -> None:
    conn = hostile_copy(
        departments.out_dir, tmp_path / "w", "zhijian.org_code", "added_column", control="none"
    )
    with pytest.raises(SourceError, match=r"no control file org_code_\d+\.csv\.ctl beside"):
        side.extract("zhijian.org_code", conn)


def test_an_optional_control_file_may_be_missing(departments, side: Lakeside, tmp_path) -> None:
    conn = hostile_copy(
        departments.out_dir, tmp_path / "w", "zhijian.org_code", "added_column", control="none"
    )
    dataset = CATALOG.dataset("zhijian.org_code")
    optional = dataset.model_copy(
        update={"source": dataset.source.model_copy(update={"control_file": "optional"})}
    )
    result = extract_to_raw(
        optional, conn, DEMO_DATE, lake=side.lake, store=side.store, batch_id="o"
    )
    assert result.rows == departments.rows["zhijian.org_code"]
    assert side.lake.read_manifest(result.path).extra["control_file"] is None


@pytest.mark.parametrize(
    "body, message",
    [
        ("not json", r"control file .*\.ctl is not JSON"),
        ('{"sha256": "' + "0" * 64 + '"}', r"has no row count"),
        ('{"rows": 3}', r"has no SHA-256"),
    ],
)
def test_a_malformed_control_file_is_one_line(
    departments, side: Lakeside, tmp_path: Path, body: str, message: str
) -> None:
    conn = hostile_copy(departments.out_dir, tmp_path / "w", "zhijian.org_code", "added_column")
    data = conn.folder() / f"org_code_{DEMO_DATE:%Y%m%d}.csv"
    control_path(data).write_text(body, encoding="utf-8")
    with pytest.raises(SourceError, match=message) as err:
        side.extract("zhijian.org_code", conn)
    _one_clean_line(str(err.value), "zhijian.org_code")


def test_the_verified_control_file_is_in_the_raw_manifest(departments, side: Lakeside) -> None:
    conn = drop_connection(departments.out_dir, "renshe.insured_person")
    result = side.extract("renshe.insured_person", conn)
    control = side.lake.read_manifest(result.path).extra["control_file"]
    data = conn.folder() / f"insured_person_{DEMO_DATE:%Y%m%d}.csv"
    said = json.loads(control_path(data).read_text("utf-8"))
    assert control == {"file": data.name + ".ctl", "rows": said["rows"], "sha256": said["sha256"]}


# --- 2. sheets, headers ---------------------------------------------------------------------


def test_a_notes_sheet_in_front_of_the_data_is_not_read(
    departments, side: Lakeside, tmp_path: Path
) -> None:
    """Issue 8, seen 2: sheet 0 was the notes sheet: 0 rows, empty partitions, success,
    and the notes cell (a name and a mobile number) reached the log, manifest and schema."""
    conn = hostile_copy(departments.out_dir, tmp_path / "w", "guoshui.taxpayer", "notes_sheet")
    result = side.extract("guoshui.taxpayer", conn)
    assert result.rows == departments.rows["guoshui.taxpayer"] > 0
    assert result.location.endswith("#taxpayer")
    for written in Path(result.path).iterdir():  # manifest and Parquet (schema included)
        data = written.read_bytes()
        assert not any(p.encode() in data for p in PERSONAL), written.name


def test_a_workbook_without_the_catalog_sheet_is_one_line(
    departments, side: Lakeside, tmp_path: Path
) -> None:
    dataset = CATALOG.dataset("guoshui.taxpayer")
    conn = hostile_copy(departments.out_dir, tmp_path / "w", dataset.id, "notes_sheet")
    renamed = dataset.model_copy(
        update={"source": dataset.source.model_copy(update={"sheet": "纳税人"})}
    )
    with pytest.raises(SourceError) as err:
        extract_to_raw(renamed, conn, DEMO_DATE, lake=side.lake, store=side.store, batch_id="s")
    message = str(err.value)
    assert "has no sheet '纳税人' (2 sheet(s) in the workbook)" in message
    assert "说明" not in message and "taxpayer'" not in message  # sheet names not listed
    _one_clean_line(message, dataset.id)


@pytest.mark.parametrize("dataset_id", ["renshe.insured_person", "guoshui.taxpayer"])
def test_a_headerless_file_is_reported_without_its_first_row(
    departments, side: Lakeside, tmp_path: Path, dataset_id: str
) -> None:
    """Issue 8, seen 3 (the contract half): the first data row became the header."""
    conn = hostile_copy(departments.out_dir, tmp_path / "w", dataset_id, "headerless")
    first_row = pd.read_parquet(
        departments.out_dir / "_state" / f"{dataset_id}.parquet",
        columns=list(CATALOG.dataset(dataset_id).field_names),
    ).iloc[0]
    with pytest.raises(SourceError, match=r"header looks like data \(columns 1, ") as err:
        side.extract(dataset_id, conn)
    message = str(err.value)
    _one_clean_line(message, dataset_id)
    for value in first_row.dropna():
        if len(str(value)) > 2:  # short codes (性别 男) could be any text
            assert str(value) not in message
    assert side.raw_rows(dataset_id) is None


def _header_only_csv(folder: Path, dataset_id: str, header: list[str]) -> SourceConnection:
    dataset = CATALOG.dataset(dataset_id)
    folder.mkdir(parents=True)
    path = folder / (dataset.source.path or "").format(ds_nodash=f"{DEMO_DATE:%Y%m%d}")
    path.write_bytes((",".join(header) + "\n").encode(dataset.source.encoding or "utf-8"))
    with_control_file(path, 0)
    return SourceConnection(dataset.source.connection_id, "fs", extra={"path": str(folder)})


def test_headers_are_checked_on_zero_row_deliveries_too(side: Lakeside, tmp_path: Path) -> None:
    """Issue 8, seen 2: a 0-row delivery skipped the missing-column check."""
    dataset = CATALOG.dataset("renshe.insured_person")
    missing = [f for f in dataset.field_names if f != "id_no"]
    conn = _header_only_csv(tmp_path / "a", dataset.id, missing)
    with pytest.raises(SourceError, match=r"catalog column\(s\) id_no missing"):
        side.extract(dataset.id, conn)
    data_like = [*dataset.field_names[:-1], "13812345678"]
    conn = _header_only_csv(tmp_path / "b", dataset.id, data_like)
    with pytest.raises(SourceError, match=r"header looks like data \(column 13\)") as err:
        side.extract(dataset.id, conn)
    assert "13812345678" not in str(err.value)


def test_which_header_cells_look_like_data() -> None:
    dataset = CATALOG.dataset("renshe.insured_person")
    valid_uscc = str(usccs(np.random.default_rng(7), 1, ["440703"])[0])
    cells = pd.Series(
        [
            *dataset.field_names,  # the catalog's own names never look like data
            "remark",
            "备注",
            "sfzh",
            "440703199001011234",
            "13812345678",
            "导出人: 陈大文 13812345678",
            "2017/2/23",
            valid_uscc,  # passes employer_uscc's rule
            "参保缴费",  # an allowed value of status
            "SB0000000001",  # mostly digits
        ]
    )
    flags = dict(zip(cells, looks_like_data(cells, dataset), strict=True))
    assert not any(flags[n] for n in [*dataset.field_names, "remark", "备注", "sfzh"])
    assert all(flags[c] for c in cells[len(dataset.field_names) + 3 :])
    report = header_report(dataset, ["insured_no", "id_no", "id_no", "", "13812345678"])
    assert report.duplicated == {"'id_no'": [2, 3]} and report.unnamed == [4]
    assert report.data_like == [5] and "name" in report.missing


# --- 3. volume ------------------------------------------------------------------------------


def test_a_snapshot_that_shrank_past_its_limit_trips_until_accepted(
    departments, side: Lakeside, tmp_path: Path
) -> None:
    dataset_id = "renshe.insured_person"
    full = departments.rows[dataset_id]
    side.night(dataset_id, drop_connection(departments.out_dir, dataset_id))
    # the department really sent 60 % (its control file agrees): only the volume check sees it
    conn = hostile_copy(
        departments.out_dir, tmp_path / "w", dataset_id, "cut_at_row", NEXT, control="fresh"
    )
    with pytest.raises(BreakerTripped) as err:
        side.extract(dataset_id, conn, NEXT)
    message = str(err.value)
    assert "snapshot shrank by 40.0%" in message and f"{full:,} on the last good night" in message
    assert f"lake accept {dataset_id} --date {NEXT}" in message
    _one_clean_line(message, dataset_id)
    assert side.raw_rows(dataset_id, NEXT) is None, "nothing replaced"
    side.store.record_acceptance(dataset_id, NEXT, "clerk", "3 districts moved to another system")
    result = side.extract(dataset_id, conn, NEXT)
    assert result.rows == int(full * 0.6)
    volume = side.lake.read_manifest(result.path).extra["volume"]
    assert volume["accepted_by"] == "clerk" and volume["reason"].startswith("3 districts")
    assert volume["last_good"] == {"ds": str(DEMO_DATE), "rows": full}


def test_zero_rows_after_a_night_with_rows_trips(departments, side: Lakeside, tmp_path) -> None:
    dataset_id = "weiji.health_record"
    side.night(dataset_id, drop_connection(departments.out_dir, dataset_id))
    conn = hostile_copy(departments.out_dir, tmp_path / "w", dataset_id, "header_only", NEXT)
    with pytest.raises(BreakerTripped, match=r"0 rows delivered, [\d,]+ on the last good night"):
        side.extract(dataset_id, conn, NEXT)


def test_a_breaker_night_is_not_a_good_night(departments, side: Lakeside) -> None:
    dataset_id = "zhijian.org_code"
    side.night(dataset_id, drop_connection(departments.out_dir, dataset_id))
    assert side.store.last_good_delivery(dataset_id, NEXT) == (
        DEMO_DATE,
        departments.rows[dataset_id],
    )
    side.store.record_error(f"night-{DEMO_DATE}", f"validate {dataset_id}", "breaker")
    assert side.store.last_good_delivery(dataset_id, NEXT) is None
    assert side.store.last_good_delivery(dataset_id, DEMO_DATE) is None  # earlier dates only


@pytest.mark.parametrize(
    "dataset_id, rows, last, trips",
    [
        ("renshe.insured_person", 9_000, 10_000, False),  # 10 %: at the limit
        ("renshe.insured_person", 8_999, 10_000, True),
        ("renshe.insured_person", 12_000, 10_000, False),  # growth is never a problem
        ("renshe.insured_person", 0, 10_000, True),
        ("gongan.population", 5, 10_000, False),  # incremental: a small night is normal
        ("gongan.population", 0, 10_000, False),  # an empty window is a quiet day
        ("gongan.population", 0, None, False),  # no good night yet
        ("renshe.insured_person", 0, 0, False),
    ],
)
def test_volume_limits(dataset_id: str, rows: int, last: int | None, trips: bool) -> None:
    previous = None if last is None else LastGoodNight(DEMO_DATE, last)
    assert (volume_problem(CATALOG.dataset(dataset_id), rows, previous) is not None) is trips
