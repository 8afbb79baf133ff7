"""The leak scan of a public partition reads a column of few values dictionary-encoded (its
distinct values, never laid out row by row; decision 0021): a leak in such a column, in
the Parquet file or in the CSV alone, is found as in any other, with its row count. A CSV
whose bytes hold no run of eleven digits is not parsed back (decision 0026), and a leak
in it is still found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from etl import publish_public
from etl.publish_public import delivery_files, public_file_findings
from etl.zones import Lake

MOBILE = "13912345678"


def _partition(tmp_path: Path, table: pa.Table) -> tuple[Lake, str, list[dict]]:
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path / 'c.db'}")
    folder = tmp_path / "lake" / "public" / "t" / "dt=2026-11-28"
    folder.mkdir(parents=True)
    files = delivery_files("t", table)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return lake, str(folder), [{"file": name} for name in files]


def _table(rows: int, leaked: int) -> pa.Table:
    rng = np.random.default_rng(5)
    district = np.array(["440703", "440704", "440705"])[rng.integers(0, 3, rows)].astype(object)
    district[rng.choice(rows, leaked, replace=False)] = f"电话{MOBILE}"
    return pa.table(
        {
            "district_code": pa.array(district, pa.string()),
            "sex": pa.array(np.array(["男", "女"])[rng.integers(0, 2, rows)]),
            "n": pa.array(np.arange(rows)),
        }
    )


def test_a_leak_in_a_column_of_few_values_is_found_with_its_rows(tmp_path: Path) -> None:
    lake, folder, files = _partition(tmp_path, _table(30_000, 7))
    findings = public_file_findings(lake, folder, files, "t")
    assert [f.split(":")[0] for f in findings] == ["public/t/t.parquet", "public/t/t.csv"]
    assert all("column 'district_code' holds mobile (7 rows, first at row" in f for f in findings)
    assert MOBILE not in " ".join(findings)


def test_a_leak_in_the_csv_alone_is_found(tmp_path: Path) -> None:
    """The CSV is scanned as written: a value only it holds is found there."""
    lake, folder, files = _partition(tmp_path, _table(30_000, 0))
    csv = Path(folder) / "t.csv"
    text = csv.read_bytes().replace(b"\r\n440704,", f"\r\n{MOBILE},".encode(), 3)
    csv.write_bytes(text)
    findings = public_file_findings(lake, folder, files, "t")
    assert findings and all(f.startswith("public/t/t.csv") for f in findings)
    assert "column 'district_code' holds mobile (3 rows" in findings[0]
    assert public_file_findings(*_partition(tmp_path / "clean", _table(30_000, 0)), "t") == []


def _files_parsed_back(monkeypatch) -> list[str]:
    """The names of the staged files the scan reads back, as it reads them."""
    parsed: list[str] = []
    real_read_back = publish_public._read_back

    def read_back(lake: Lake, location: str, encoded: bool = False) -> pa.Table:
        parsed.append(location.rsplit("/", 1)[-1])
        return real_read_back(lake, location, encoded)

    monkeypatch.setattr(publish_public, "_read_back", read_back)
    return parsed


def test_a_csv_with_no_digit_run_is_not_parsed_and_a_leak_across_a_quoted_line_break_is_found(
    tmp_path: Path, monkeypatch
) -> None:
    """A CSV whose bytes hold no run of eleven digits and separators anywhere is passed
    without being parsed back (no cell can hold one); a file that holds one, here a mobile
    split by a line break and spaces inside a quoted cell, is parsed and the leak found."""
    rows = 20_000
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "district_code": pa.array(np.array(["440703", "440704"])[rng.integers(0, 2, rows)]),
            "year": pa.array(rng.integers(1950, 2020, rows)),
            "sex": pa.array(np.array(["男", "女"])[rng.integers(0, 2, rows)]),
        }
    )
    parsed = _files_parsed_back(monkeypatch)
    lake, folder, files = _partition(tmp_path, table)
    assert public_file_findings(lake, folder, files, "t") == []
    assert parsed == ["t.parquet"]

    csv = Path(folder) / "t.csv"
    cell = '"电话：139 1234\r\n5678，见备注"'.encode()
    csv.write_bytes(csv.read_bytes().replace(b"\r\n440704,", b"\r\n" + cell + b",", 2))
    parsed.clear()
    (finding,) = public_file_findings(lake, folder, files, "t")
    assert finding.startswith("public/t/t.csv: column 'district_code' holds mobile (2 rows")
    assert "t.csv" in parsed

    csv.write_bytes(csv.read_bytes().replace("男".encode(), b"\xff", 1))  # not UTF-8
    with pytest.raises(pa.ArrowInvalid):
        public_file_findings(lake, folder, files, "t")


def test_a_csv_without_quotes_is_judged_line_by_line(tmp_path: Path, monkeypatch) -> None:
    """In a CSV without a quote every line break ends a record: a row ending in a date and
    the next beginning with nine digits (the organisation codes) make a run of digits
    across the break, which no cell holds, and the file is not parsed back for it."""
    rows = 5_000
    table = pa.table(
        {
            "org_code": pa.array([f"{n:09d}" for n in range(rows)]),
            "name": pa.array(["某某贸易有限公司"] * rows),
            "valid_until": pa.array(np.full(rows, np.datetime64("2029-12-20"), "datetime64[D]")),
        }
    )
    parsed = _files_parsed_back(monkeypatch)
    lake, folder, files = _partition(tmp_path, table)
    assert b"2029-12-20\r\n000000001" in (Path(folder) / "t.csv").read_bytes()
    assert public_file_findings(lake, folder, files, "t") == []
    assert parsed == ["t.parquet"]
