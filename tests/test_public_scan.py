"""The leak scan of a public partition reads a column of few values dictionary-encoded (its
distinct values, never laid out row by row; decision 0021): a leak in such a column, in
the Parquet file or in the CSV alone, is found as in any other, with its row count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

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
