"""The validation rules the catalog can name, each one vectorised function over a column.

A rule returns a boolean numpy array: True where the value passes. Nulls pass every rule
(whether a value may be missing is the separate ``required`` check). The Great
Expectations suite (``etl/quality.py``) wraps exactly these functions, so each rule is
written once.

Rules that refer to "now" (a birth date in the future) are *dated*: they take ``as_of``,
the night's partition date, and never read the clock. The validation shell hands the
partition date in from one place (``validate_partition`` → ``QualitySuite``), so a rerun or
a backfill of a date judges every row exactly as the first run did (docs/decisions/0003).
A dated rule must be monotone in ``as_of`` (valid on D ⇒ valid on D + 1): change detection
carries clean rows forward on that promise (docs/decisions/0007).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache, partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.identifiers import (
    _slice,
    business_reg_no_check_digits,
    is_valid_resident_id,
    org_code_check_chars,
    uscc_check_chars,
)

USCC_CHARS = "0-9A-HJ-NPQRTUWXY"


Column = pd.Series | pa.Array | pa.ChunkedArray  # a rule takes either; validation hands Arrow


def _strings(values: Column) -> pd.Series:
    """A column as a pandas string Series backed by Arrow (no copy from an Arrow array)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        text = values if values.type == pa.string() else values.cast(pa.string())
        return pd.Series(pd.arrays.ArrowStringArray(text), copy=False)
    return values.astype("string")


def _passes(values: pd.Series, ok_where_present: np.ndarray) -> np.ndarray:
    return values.isna().to_numpy() | ok_where_present


@cache
def division_codes() -> frozenset[str]:
    """Every GB/T 2260 county-level code, current and retired (python-stdnum's table).

    Division codes are never reissued, so IDs issued under retired codes stay valid.
    """
    import stdnum.cn

    codes: set[str] = set()
    province = ""
    for line in (Path(stdnum.cn.__file__).parent / "loc.dat").read_text("utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            province = line.split()[0]
        else:
            codes.add(province + line.split()[0])
    return frozenset(codes)


def _matches(values: pd.Series, pattern: str) -> np.ndarray:
    return values.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)


def valid_division_code(values: pd.Series) -> np.ndarray:
    values = _strings(values)
    return _passes(values, values.isin(division_codes()).to_numpy(dtype=bool))


def valid_resident_id(values: pd.Series, as_of: date) -> np.ndarray:
    """18 chars, right check char, a birth date that exists and is not after ``as_of``, a real
    (possibly retired) division code."""
    values = _strings(values)
    ok = is_valid_resident_id(values.to_numpy(dtype=object, na_value=None), born_by=as_of)
    ok &= values.str.slice(0, 6).isin(division_codes()).to_numpy(dtype=bool)
    return _passes(values, ok)


def _shaped_and_checked(
    values: pd.Series, pattern: str, width: int, check: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Values that match ``pattern`` and pass ``check`` (run only on those); nulls pass."""
    values = _strings(values)
    shaped = _matches(values, pattern)
    ok = np.zeros(len(values), dtype=bool)
    if shaped.any():
        ok[shaped] = check(values[shaped].to_numpy(dtype=f"U{width}"))
    return _passes(values, ok)


def _org_code_check_ok(codes: np.ndarray) -> np.ndarray:
    return org_code_check_chars(_slice(codes, 0, 8)) == _slice(codes, 8, 9)


def valid_org_code(values: pd.Series) -> np.ndarray:
    return _shaped_and_checked(values, r"[0-9A-Z]{8}[0-9X]", 9, _org_code_check_ok)


def valid_uscc(values: pd.Series) -> np.ndarray:
    """Shape, GB 32100 check char, and the check char of the embedded organisation code."""
    return _shaped_and_checked(
        values,
        rf"[{USCC_CHARS}]{{2}}[0-9]{{6}}[{USCC_CHARS}]{{10}}",
        18,
        lambda codes: (
            (uscc_check_chars(_slice(codes, 0, 17)) == _slice(codes, 17, 18))
            & _org_code_check_ok(_slice(codes, 8, 17))
        ),
    )


def valid_business_reg_no(values: pd.Series) -> np.ndarray:
    return _shaped_and_checked(
        values,
        r"[0-9]{15}",
        15,
        lambda codes: business_reg_no_check_digits(_slice(codes, 0, 14)) == _slice(codes, 14, 15),
    )


def valid_tax_no(values: pd.Series, as_of: date) -> np.ndarray:
    """A USCC, an old 15-char number (division + org code), or a resident ID + 2 digits."""
    values = _strings(values)
    as_uscc = valid_uscc(values) & values.notna().to_numpy()
    old = _matches(values, r"[0-9]{6}[0-9A-Z]{8}[0-9X]")
    old &= valid_org_code(values.str.slice(6, 15)) & valid_division_code(values.str.slice(0, 6))
    personal = _matches(values, r"[0-9]{17}[0-9X][0-9]{2}")
    personal &= valid_resident_id(values.str.slice(0, 18), as_of)
    return _passes(values, as_uscc | old | personal)


def valid_applicant_id(values: pd.Series, as_of: date) -> np.ndarray:
    values = _strings(values)
    return valid_resident_id(values, as_of) | valid_uscc(values)


def valid_phone(values: pd.Series) -> np.ndarray:
    """A mobile (11 digits from 13x–19x) or a landline with area code."""
    values = _strings(values)
    return _passes(values, _matches(values, r"1[3-9][0-9]{9}|0[1-9][0-9]{8,10}"))


def _canonical_moment(values: pd.Series, strptime: str, pattern: str) -> np.ndarray:
    values = _strings(values)
    parsed = pd.to_datetime(values, format=strptime, errors="coerce")
    ok = parsed.notna().to_numpy() & (parsed.dt.year.between(1900, 2100)).to_numpy(dtype=bool)
    return _passes(values, ok & _matches(values, pattern))


def valid_date(values: pd.Series) -> np.ndarray:
    """An existing date in canonical ``YYYY-MM-DD`` form (what standardisation produces)."""
    return _canonical_moment(values, "%Y-%m-%d", r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def valid_datetime(values: pd.Series) -> np.ndarray:
    """An existing moment in canonical ``YYYY-MM-DD HH:MM:SS`` form (it is compared as text)."""
    return _canonical_moment(
        values, "%Y-%m-%d %H:%M:%S", r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
    )


def valid_enterprise_name(values: pd.Series) -> np.ndarray:
    values = _strings(values)
    return _passes(values, (values.str.len() >= 2).fillna(False).to_numpy(dtype=bool))


@dataclass(frozen=True)
class Rule:
    name: str
    check: Callable[..., np.ndarray]  # column(s) [, as_of=] -> passes
    reason: str  # "<field> <reason> (<value>)" reads as a sentence
    dated: bool = False  # takes ``as_of`` (the partition date) as its reference "now"

    def passes(self, *columns: pd.Series, as_of: date | None) -> np.ndarray:
        """Run the rule; ``as_of`` reaches the dated rules only (which refuse to run without)."""
        if not self.dated:
            return self.check(*columns)
        if as_of is None:
            raise ValueError(f"rule {self.name} is judged against a reference date; none given")
        return self.check(*columns, as_of)


FIELD_RULES: dict[str, Rule] = {
    r.name: r
    for r in [
        Rule("resident_id", valid_resident_id, "is not a valid resident ID", dated=True),
        Rule("uscc", valid_uscc, "is not a valid unified social credit code"),
        Rule("org_code", valid_org_code, "is not a valid organisation code"),
        Rule("business_reg_no", valid_business_reg_no, "is not a valid registration number"),
        Rule("tax_no", valid_tax_no, "is not a valid taxpayer number", dated=True),
        Rule("applicant_id", valid_applicant_id, "is neither a resident ID nor a USCC", dated=True),
        Rule("phone", valid_phone, "is not a phone number"),
        Rule("date", valid_date, "is not a date in a known format"),
        Rule("datetime", valid_datetime, "is not a date-time in a known format"),
        Rule("division_code", valid_division_code, "is not a division code"),
        Rule("enterprise_name", valid_enterprise_name, "is not an enterprise name"),
    ]
}


# --- text that is really text (every string field, whatever the catalog says) ----------

# NUL, other C0/C1 control characters (tab, line feed and carriage return allowed) and
# U+FFFD, which a decoder leaves where bytes were not text
BROKEN_TEXT = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{fffd}]"  # RE2 syntax
# what UTF-8 bytes mis-read as GBK turn back into: Chinese text and its punctuation
_CJK = r"\x{3400}-\x{4dbf}\x{4e00}-\x{9fff}\x{ff00}-\x{ffef}"
_CJK_ONLY = rf"^[\x00-\x7f\x{{3000}}-\x{{303f}}{_CJK}]*$"


def _arrow_text(values: Column) -> pa.Array:
    """A column as an Arrow string array (RE2 over Arrow: no Python call per value)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        array = values
    else:
        array = pa.array(values.array if hasattr(values, "array") else values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if array.type == pa.string() else array.cast(pa.string())


def _flag(values: pa.Array, pattern: str) -> np.ndarray:
    found = pc.match_substring_regex(values, pattern)
    return pc.fill_null(found, False).to_numpy(zero_copy_only=False)


def intact_text(values: pd.Series) -> np.ndarray:
    """No NUL, no control character, no replacement character (decoding damage)."""
    return ~_flag(_arrow_text(values), BROKEN_TEXT)


def not_mojibake(values: pd.Series, encoding: str) -> np.ndarray:
    """Fails a value that is UTF-8 mis-read as ``encoding`` (张三 read as GBK: 寮犱笁).

    Encoded back to ``encoding``, such a value gives bytes that are valid UTF-8 and decode
    to Chinese text, different from the value. A real GBK value almost never does (over
    the simulator's 250,000 names, addresses and codes: none). Vectorised: the candidate
    values are joined into one string (line feed between, a byte GBK never uses inside a
    character), encoded and decoded once, and split again.
    """
    text = _arrow_text(values)
    candidate = ~pc.fill_null(pc.string_is_ascii(text), True).to_numpy(zero_copy_only=False)
    candidate &= ~_flag(text, "\n") & ~_flag(text, BROKEN_TEXT)  # intact_text reports those
    ok = np.ones(len(text), dtype=bool)
    if not candidate.any():
        return ok
    shown = text.filter(pa.array(candidate))
    joined = pc.binary_join(pa.ListArray.from_arrays([0, len(shown)], shown), "\n")[0].as_py()
    as_utf8 = joined.encode(encoding, errors="replace").decode("utf-8", errors="replace")
    back = pc.split_pattern(pa.array([as_utf8]), "\n").flatten()
    mojibake = (
        ~_flag(back, "\\x{fffd}")  # the bytes were valid UTF-8
        & _flag(back, _CJK_ONLY)
        & _flag(back, f"[{_CJK}]")
        & ~pc.equal(back, shown).to_numpy(zero_copy_only=False)
    )
    ok[np.flatnonzero(candidate)] = ~mojibake
    return ok


_MOJIBAKE_ENCODINGS = {"gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}  # codec → rule

TEXT_RULES: dict[str, Rule] = {
    r.name: r
    for r in [
        Rule(
            "intact_text",
            intact_text,
            "holds a NUL, a control character or a replacement character (decoding damage)",
        ),
        *(
            Rule(
                f"not_mojibake_{name}",
                partial(not_mojibake, encoding=name),
                f"decodes differently as UTF-8 and as the declared {name.upper()} "
                "(a UTF-8 value inside the file)",
            )
            for name in sorted(set(_MOJIBAKE_ENCODINGS.values()))
        ),
    ]
}


def text_rules(encoding: str | None) -> list[Rule]:
    """The rules every string field of a source in ``encoding`` is checked with."""
    rules = [TEXT_RULES["intact_text"]]
    name = codecs.lookup(encoding).name if encoding else "utf-8"
    if name in _MOJIBAKE_ENCODINGS:
        rules.append(TEXT_RULES[f"not_mojibake_{_MOJIBAKE_ENCODINGS[name]}"])
    return rules


# --- rules across fields ---------------------------------------------------------------


def id_agrees_with_birth_date_and_sex(
    id_no: pd.Series, birth_date: pd.Series, sex: pd.Series
) -> np.ndarray:
    """Where an ID is present: its birth date and sex digit agree with the other fields."""
    id_no, birth_date, sex = _strings(id_no), _strings(birth_date), _strings(sex)
    id_birth = (
        id_no.str.slice(6, 10) + "-" + id_no.str.slice(10, 12) + "-" + id_no.str.slice(12, 14)
    )
    birth_ok = (birth_date.isna() | (id_birth == birth_date)).fillna(True).to_numpy(dtype=bool)
    digit = pd.to_numeric(id_no.str.slice(16, 17), errors="coerce")
    male = (digit % 2 == 1).fillna(False).to_numpy(dtype=bool)
    id_sex = pd.Series(np.where(male, "男", "女"), index=sex.index, dtype="string")
    sex_ok = (sex.isna() | digit.isna() | (sex == id_sex)).fillna(True).to_numpy(dtype=bool)
    return id_no.isna().to_numpy() | (birth_ok & sex_ok)


def not_before(later: pd.Series, earlier: pd.Series) -> np.ndarray:
    """``later >= earlier`` where both are present (ISO strings compare as times)."""
    later, earlier = _strings(later), _strings(earlier)
    return (later.isna() | earlier.isna() | (later >= earlier)).fillna(True).to_numpy(dtype=bool)


def id_kind_matches_applicant_type(
    applicant_id: pd.Series, applicant_type: pd.Series, as_of: date
) -> np.ndarray:
    """Natural persons apply with a resident ID, legal persons with a USCC."""
    applicant_id, applicant_type = _strings(applicant_id), _strings(applicant_type)
    person = (applicant_type == "自然人").fillna(False).to_numpy(dtype=bool)
    legal = (applicant_type == "法人").fillna(False).to_numpy(dtype=bool)
    ok = np.ones(len(applicant_id), dtype=bool)
    present = applicant_id.notna().to_numpy()
    ok[person & present] = valid_resident_id(applicant_id[person & present], as_of)
    ok[legal & present] = valid_uscc(applicant_id[legal & present])
    return ok


CROSS_FIELD_RULES: dict[str, Rule] = {
    r.name: r
    for r in [
        Rule(
            "id_matches_birth_date_and_sex",
            id_agrees_with_birth_date_and_sex,
            "birth date or sex disagrees with the ID number",
        ),
        Rule("not_before", not_before, "is earlier than the time it must follow"),
        Rule(
            "id_kind_matches_applicant_type",
            id_kind_matches_applicant_type,
            "ID kind does not match the applicant type",
            dated=True,
        ),
    ]
}
