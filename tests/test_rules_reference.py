"""The Arrow/byte-matrix rules give the verdicts of their first, obvious formulations.

The references below are the pandas formulations the rules were first written in (string
methods, ``pd.to_datetime``, ``catalog.identifiers.is_valid_resident_id``), kept only
here. They run on values built to sit on every edge: bad check characters, 30 February,
29 February in leap and common years, second 60, hour 24, lowercase and full-width
characters, control characters, mojibake, nulls.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from catalog.identifiers import (
    JIANGMEN_DIVISIONS,
    _slice,
    business_reg_no_check_digits,
    is_valid_resident_id,
    org_code_check_chars,
    uscc_check_chars,
)
from etl.rules import (
    BROKEN_TEXT,
    division_codes,
    id_agrees_with_birth_date_and_sex,
    intact_text,
    not_mojibake,
    valid_business_reg_no,
    valid_date,
    valid_datetime,
    valid_org_code,
    valid_resident_id,
    valid_tax_no,
    valid_uscc,
)
from tests.helpers import resident_ids, usccs

AS_OF = date(2026, 11, 28)
rng = np.random.default_rng(2026)


# --- the references ------------------------------------------------------------------


def _fullmatch(values: pd.Series, pattern: str) -> np.ndarray:
    return values.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)


def ref_resident_id(values: pd.Series, as_of: date) -> np.ndarray:
    ok = is_valid_resident_id(values.to_numpy(dtype=object, na_value=None), born_by=as_of)
    ok &= values.str.slice(0, 6).isin(division_codes()).to_numpy(dtype=bool)
    return values.isna().to_numpy() | ok


def _ref_shaped(values: pd.Series, pattern: str, width: int, check) -> np.ndarray:
    shaped = _fullmatch(values, pattern)
    ok = np.zeros(len(values), dtype=bool)
    if shaped.any():
        ok[shaped] = check(values[shaped].to_numpy(dtype=f"U{width}"))
    return values.isna().to_numpy() | ok


def _ref_org_ok(codes: np.ndarray) -> np.ndarray:
    return org_code_check_chars(_slice(codes, 0, 8)) == _slice(codes, 8, 9)


def ref_org_code(values: pd.Series) -> np.ndarray:
    return _ref_shaped(values, r"[0-9A-Z]{8}[0-9X]", 9, _ref_org_ok)


USCC = r"[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}"


def ref_uscc(values: pd.Series) -> np.ndarray:
    return _ref_shaped(
        values,
        USCC,
        18,
        lambda c: (
            (uscc_check_chars(_slice(c, 0, 17)) == _slice(c, 17, 18))
            & _ref_org_ok(_slice(c, 8, 17))
        ),
    )


def ref_business_reg_no(values: pd.Series) -> np.ndarray:
    return _ref_shaped(
        values,
        r"[0-9]{15}",
        15,
        lambda c: business_reg_no_check_digits(_slice(c, 0, 14)) == _slice(c, 14, 15),
    )


def ref_tax_no(values: pd.Series, as_of: date) -> np.ndarray:
    as_uscc = ref_uscc(values) & values.notna().to_numpy()
    old = _fullmatch(values, r"[0-9]{6}[0-9A-Z]{8}[0-9X]")
    old &= ref_org_code(values.str.slice(6, 15))
    old &= values.isna().to_numpy() | values.str.slice(0, 6).isin(division_codes()).to_numpy()
    personal = _fullmatch(values, r"[0-9]{17}[0-9X][0-9]{2}")
    personal &= ref_resident_id(values.str.slice(0, 18), as_of)
    return values.isna().to_numpy() | as_uscc | old | personal


def ref_moment(values: pd.Series, strptime: str, pattern: str) -> np.ndarray:
    parsed = pd.to_datetime(values, format=strptime, errors="coerce")
    ok = parsed.notna().to_numpy() & (parsed.dt.year.between(1900, 2100)).to_numpy(dtype=bool)
    return values.isna().to_numpy() | (ok & _fullmatch(values, pattern))


def ref_id_agrees(id_no: pd.Series, birth_date: pd.Series, sex: pd.Series) -> np.ndarray:
    id_birth = (
        id_no.str.slice(6, 10) + "-" + id_no.str.slice(10, 12) + "-" + id_no.str.slice(12, 14)
    )
    birth_ok = (birth_date.isna() | (id_birth == birth_date)).fillna(True).to_numpy(dtype=bool)
    digit = pd.to_numeric(id_no.str.slice(16, 17), errors="coerce")
    male = (digit % 2 == 1).fillna(False).to_numpy(dtype=bool)
    id_sex = pd.Series(np.where(male, "男", "女"), index=sex.index, dtype="string")
    sex_ok = (sex.isna() | digit.isna() | (sex == id_sex)).fillna(True).to_numpy(dtype=bool)
    return id_no.isna().to_numpy() | (birth_ok & sex_ok)


def ref_intact(values: pd.Series) -> np.ndarray:
    return ~values.str.contains(BROKEN_TEXT.replace(r"\x{fffd}", "\ufffd")).fillna(False).to_numpy(
        dtype=bool
    )


def ref_not_mojibake(values: pd.Series, encoding: str) -> np.ndarray:
    def one(value: str | None) -> bool:
        if (
            value is None
            or value.isascii()
            or "\n" in value
            or not ref_intact(pd.Series([value], dtype="string"))[0]
        ):
            return True
        back = value.encode(encoding, errors="replace").decode("utf-8", errors="replace")
        cjk = any("\u3400" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef" for c in back)
        only = all(
            c <= "\x7f"
            or "\u3000" <= c <= "\u303f"
            or "\u3400" <= c <= "\u4dbf"
            or "\u4e00" <= c <= "\u9fff"
            or "\uff00" <= c <= "\uffef"
            for c in back
        )
        return not ("\ufffd" not in back and cjk and only and back != value)

    return np.array([one(v) for v in values.to_numpy(dtype=object, na_value=None)])


# --- the values ------------------------------------------------------------------------


def _mutated(values: list[str], n: int) -> list[str | None]:
    """Each value, and copies with one character replaced, one removed, one doubled."""
    out: list[str | None] = [*values, None, "", " "]
    alphabet = list("0123456789XxAHIOZ-/ 年月日:") + ["\x00", "\ufffd", "５", "\u200b"]
    for _ in range(n):
        value = values[rng.integers(len(values))]
        at = int(rng.integers(len(value)))
        kind = rng.integers(3)
        if kind == 0:
            value = value[:at] + alphabet[rng.integers(len(alphabet))] + value[at + 1 :]
        elif kind == 1:
            value = value[:at] + value[at + 1 :]
        else:
            value = value[:at] + value[at] + value[at:]
        out.append(value)
    return out


def _dates() -> list[str]:
    years = ["1899", "1900", "1999", "2000", "2016", "2017", "2026", "2100", "2101", "0000"]
    months = ["00", "01", "02", "06", "12", "13"]
    days = ["00", "01", "28", "29", "30", "31", "32"]
    return [f"{y}-{m}-{d}" for y in years for m in months for d in days]


def _times() -> list[str]:
    clock = ["00:00:00", "23:59:59", "23:59:60", "12:00:61", "24:00:00", "23:60:00", "9:00:00"]
    days = ["2017-02-28", "2016-02-29", "2017-02-29", "2100-12-31", "1899-12-31", "1900-01-01"]
    return [f"{d} {c}" for d in days for c in clock]


def _ids() -> list[str]:
    ids = list(resident_ids(rng, 400, [*JIANGMEN_DIVISIONS, "440702", "110101"]))
    body = "44070320261128001"  # born on the partition date, and the day after
    return ids + [f"{body}X", "440703202611290019", "440703190002290011", "44070319000229001"]


def _pd(values: list[str | None]) -> pd.Series:
    return pd.Series(values, dtype="string")


def _arrow(values: list[str | None]) -> pa.Array:
    return pa.array(values, pa.string())


# --- the tests -------------------------------------------------------------------------


def test_resident_id_agrees_with_the_reference() -> None:
    values = _mutated(_ids(), 6000)
    assert np.array_equal(
        valid_resident_id(_arrow(values), AS_OF), ref_resident_id(_pd(values), AS_OF)
    )
    assert valid_resident_id(_arrow(values), AS_OF).sum() > 300  # not all rejected


@pytest.mark.parametrize(
    ("rule", "reference", "make"),
    [
        (valid_uscc, ref_uscc, lambda: list(usccs(rng, 400, list(JIANGMEN_DIVISIONS)))),
        (valid_org_code, ref_org_code, lambda: [u[8:17] for u in usccs(rng, 400, ["440703"])]),
        (
            valid_business_reg_no,
            ref_business_reg_no,
            lambda: [
                b + business_reg_no_check_digits(np.array([b]))[0]
                for b in (f"{n:014d}" for n in rng.integers(10**13, 10**14, 400))
            ],
        ),
    ],
)
def test_enterprise_codes_agree_with_the_reference(rule, reference, make) -> None:
    values = _mutated(make(), 6000)
    assert np.array_equal(rule(_arrow(values)), reference(_pd(values)))
    assert rule(_arrow(values)).sum() > 300


def test_tax_numbers_agree_with_the_reference() -> None:
    uscc = list(usccs(rng, 200, list(JIANGMEN_DIVISIONS)))
    values = uscc + [u[2:8] + u[8:17] for u in uscc] + [i + "00" for i in _ids()[:200]]
    values = _mutated(values, 6000)
    assert np.array_equal(valid_tax_no(_arrow(values), AS_OF), ref_tax_no(_pd(values), AS_OF))


def test_dates_and_times_agree_with_pandas_parsing() -> None:
    dates = _mutated(_dates(), 3000)
    reference = ref_moment(_pd(dates), "%Y-%m-%d", r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
    assert np.array_equal(valid_date(_arrow(dates)), reference)
    times = _mutated(_times(), 3000)
    reference = ref_moment(
        _pd(times), "%Y-%m-%d %H:%M:%S", r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
    )
    assert np.array_equal(valid_datetime(_arrow(times)), reference)


def test_id_birth_date_and_sex_agree_with_the_reference() -> None:
    ids = _mutated(_ids(), 3000)
    births = [None if i is None or len(i) < 14 else f"{i[6:10]}-{i[10:12]}-{i[12:14]}" for i in ids]
    births = [b if rng.random() > 0.1 else "2000-01-01" for b in births]
    sexes = [["男", "女", None, "未知"][k] for k in rng.integers(4, size=len(ids))]
    mine = id_agrees_with_birth_date_and_sex(_arrow(ids), _arrow(births), _arrow(sexes))
    assert np.array_equal(mine, ref_id_agrees(_pd(ids), _pd(births), _pd(sexes)))


def test_text_rules_agree_with_the_reference() -> None:
    names = [
        "张三",
        "陈大文",
        "广东省江门市蓬江区",
        "ｘ全角",
        "abc",
        "a\tb",
        "a\nb",
        "·点",
        "\x85c1",
    ]
    mojibake = [n.encode("utf-8").decode("gbk", errors="replace") for n in names[:3]]
    values = _mutated(names + mojibake, 3000)
    assert np.array_equal(intact_text(_arrow(values)), ref_intact(_pd(values)))
    distinct = list(dict.fromkeys(values))
    assert len(set(values)) * 2 <= len(values)  # repeated values: checked once per value
    for encoding in ("gbk", "gb18030"):
        for checked in (values, distinct):  # …and each value on its own
            mine = not_mojibake(_arrow(checked), encoding)
            assert np.array_equal(mine, ref_not_mojibake(_pd(checked), encoding)), encoding
    assert not not_mojibake(_arrow(mojibake), "gbk").all()  # it does find mojibake


def test_mojibake_is_found_whatever_character_a_value_starts_with() -> None:
    """Values whose first character cannot begin UTF-8 once encoded skip the round trip:
    on random Chinese text and its mojibake (every first character of GB 2312's range,
    ASCII and full-width starts), exactly the reference's verdicts."""
    chinese = [chr(c) for c in range(0x4E00, 0x9FA6, 7)]
    texts = ["".join(rng.choice(chinese, size=rng.integers(1, 8))) for _ in range(4000)]
    texts += [f"{rng.choice(['A', '1', '（', 'ｘ', '·', ' '])}{t}" for t in texts[:500]]
    garbled = [t.encode("utf-8").decode("gbk", errors="replace") for t in texts]
    garbled += [t.encode("utf-8").decode("gb18030", errors="replace") for t in texts[:1000]]
    values = texts + garbled
    for encoding in ("gbk", "gb18030"):
        mine = not_mojibake(_arrow(values), encoding)
        assert np.array_equal(mine, ref_not_mojibake(_pd(values), encoding)), encoding
        assert not mine[len(texts) :].all()  # it finds mojibake among them
