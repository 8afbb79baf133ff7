"""The public CSV copies are written with Arrow kernels (``publish_public.public_csv``), and
must be byte for byte what ``zones.excel_csv`` (pandas ``to_csv``) writes: the same text for
every type public tables hold, the same quoting, the same formula guard, the same BOM and
line ends; where the Arrow path does not match a type it hands the table to excel_csv."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from etl.publish_public import public_csv
from etl.zones import excel_csv

HOSTILE_TEXT = [
    "plain",
    "a,b",
    'say "hi"',
    "two\nlines",
    "carriage\rreturn",
    "=SUM(A1)",
    "+86 750",
    "-1",
    "@me",
    "",
    None,
    "江门市蓬江区",
    " leading space",
]


def _table(**columns: pa.Array) -> pa.Table:
    return pa.table(columns)


CASES = {
    "text": _table(text=pa.array(HOSTILE_TEXT), n=pa.array(range(len(HOSTILE_TEXT)), pa.int64())),
    "integers with and without nulls": _table(
        count=pa.array([1, None, 305, 0, -7], pa.int64()),
        small=pa.array([1, 2, 3, 4, 5], pa.int32()),
        year=pa.array([1976, None, 2001, 1999, 1950], pa.int32()),
    ),
    "floats": _table(
        share=pa.array([0.3318, 0.0, None, 1.0, 0.0001]),
        amount=pa.array([147.69, 2.0, -3.5, 9.5e9, 123456.789]),
    ),
    "booleans": _table(suppressed=pa.array([True, False, None]), n=pa.array([1, 2, 3], pa.int64())),
    "dates and decimals": _table(
        day=pa.array([date(2001, 9, 10), None, date(999, 1, 1)]),
        capital=pa.array([Decimal("147.69"), Decimal("0.00"), None], pa.decimal128(18, 2)),
    ),
    "timestamps to the second": _table(
        accepted_at=pa.array(
            [datetime(2020, 2, 20, 13, 7, 13), None, datetime(1965, 3, 1, 0, 0, 1)],
            pa.timestamp("us"),
        ),
        completed_at=pa.array([datetime(2020, 2, 24, 18, 15, 33), None, None], pa.timestamp("s")),
    ),
    "timestamps all at midnight print as dates": _table(
        at=pa.array([datetime(2020, 2, 20), None, datetime(1960, 1, 1)], pa.timestamp("us")),
        n=pa.array([1, 2, 3]),
    ),
    "no rows": _table(a=pa.array([], pa.string()), b=pa.array([], pa.int64())),
}
# types the Arrow path leaves to pandas: still the same bytes
LEFT_TO_PANDAS = {
    "sub-second timestamps": _table(
        at=pa.array([datetime(2020, 1, 1, 1, 2, 3, 500000), None], pa.timestamp("us")),
        n=pa.array([1, 2]),
    ),
    "zoned timestamps": _table(
        at=pa.array([datetime(2020, 1, 1, 13, 7, 13)], pa.timestamp("us", "Asia/Shanghai")),
        n=pa.array([1]),
    ),
    "floats in exponent form": _table(
        tiny=pa.array([1e-05, 2.5, float("nan"), 1e10]), n=pa.array([1, 2, 3, 4])
    ),
    "one column": _table(only=pa.array(["a", None, ""])),
    "large strings": _table(text=pa.array(["=x", "a,b"], pa.large_string()), n=pa.array([1, 2])),
}


def _arrow_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the Arrow path wrote it: the pandas path fails the test if called."""

    def refused(table: pa.Table) -> bytes:
        raise AssertionError("excel_csv called: the Arrow path did not write this table")

    monkeypatch.setattr("etl.publish_public.excel_csv", refused)


@pytest.mark.parametrize("name", list(CASES))
def test_public_csv_is_byte_for_byte_excel_csv(name: str, monkeypatch) -> None:
    table = CASES[name]
    expected = excel_csv(table)
    _arrow_only(monkeypatch)
    assert public_csv(table) == expected


@pytest.mark.parametrize("name", list(LEFT_TO_PANDAS))
def test_types_the_arrow_path_does_not_match_are_left_to_pandas(name: str) -> None:
    table = LEFT_TO_PANDAS[name]
    assert public_csv(table) == excel_csv(table)


def test_a_count_beside_a_suppressed_cell_stays_a_whole_number(monkeypatch) -> None:
    """A statistic's count column holds NULL where a small cell is suppressed; in Excel the
    others must still read 108, not 108.0 (pandas makes such a column float64)."""
    table = _table(
        item=pa.array(["换证", "变更", "注销"]),
        cases=pa.array([108, None, 2_000_000_000_000_000], pa.int64()),
        suppressed=pa.array([False, True, False]),
    )
    rows = ["item,cases,suppressed", "换证,108,False", "变更,,True", "注销,2000000000000000,False"]
    expected = "\ufeff" + "".join(row + "\r\n" for row in rows)
    assert excel_csv(table).decode("utf-8") == expected
    _arrow_only(monkeypatch)
    assert public_csv(table).decode("utf-8") == expected


def test_floats_print_as_python_prints_them(monkeypatch) -> None:
    """Shares, amounts and counts held as floats, over the magnitudes the Arrow path takes
    (Python and Arrow write 1e-05 and 1e+10 differently: those go to pandas)."""
    rng = np.random.default_rng(7)
    magnitudes = 10.0 ** rng.uniform(-4, 10, 20_000)
    values = np.concatenate(
        [
            np.round(rng.uniform(0, 1, 2_000), 4),  # shares
            np.round(rng.uniform(-1e6, 1e6, 2_000), 2),  # amounts
            np.floor(magnitudes) * rng.choice([-1, 1], magnitudes.size),
            magnitudes,
        ]
    )
    table = _table(value=pa.array(values), n=pa.array(np.arange(values.size)))
    expected = excel_csv(table)
    _arrow_only(monkeypatch)
    assert public_csv(table) == expected


def test_columns_of_few_values_are_written_per_distinct_value_alike(monkeypatch) -> None:
    """Over 10,000 rows a column of few distinct values is written once per value and
    taken per row, and when every column is such, each combination's line: the same bytes,
    NULLs, quoting and the formula guard included."""
    rows = 30_000
    rng = np.random.default_rng(3)

    def few(values: list) -> list:
        return [values[i] for i in rng.integers(0, len(values), rows)]

    table = _table(
        text=pa.array(few(HOSTILE_TEXT)),
        year=pa.array(few([1976, None, 2001]), pa.int32()),
        share=pa.array(few([0.3318, None, 2.0])),
        flag=pa.array(few([True, None, False])),
        day=pa.array(few([datetime(2020, 2, 20), None]), pa.timestamp("us")),
        at=pa.array(few([datetime(2020, 2, 20, 9, 30), None]), pa.timestamp("s")),
        n=pa.array(np.arange(rows)),  # many values: written row by row
    )
    expected = excel_csv(table)
    few_only = table.drop_columns(["n"])  # every column few: each combination's line once
    expected_few = excel_csv(few_only)
    _arrow_only(monkeypatch)
    assert public_csv(table) == expected
    assert public_csv(few_only) == expected_few
