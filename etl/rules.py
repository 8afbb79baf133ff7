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
    business_reg_no_check_digits,
    byte_matrix,
    digit_numbers,
    org_code_check_chars,
    real_dates,
    resident_id_bytes_valid,
    uscc_check_chars,
)

USCC_CHARS = "0-9A-HJ-NPQRTUWXY"


Column = pd.Series | pa.Array | pa.ChunkedArray  # a rule takes either; validation hands Arrow


def _text(values: Column) -> pa.Array:
    """A column as one Arrow string array (no copy from Arrow; pandas' Arrow strings neither)."""
    if isinstance(values, pd.Series):
        values = pa.array(values.astype("string").array, from_pandas=True)
    elif not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, pa.string(), from_pandas=True)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values if values.type == pa.string() else values.cast(pa.string())


def _bools(mask: pa.Array) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def once_per_value(
    values: pa.Array, repair: Callable[[pa.Array], pa.Array], most: float = 0.5
) -> pa.Array:
    """``repair(values)``, computed on the distinct values when they are at most ``most`` of
    the values (by default each occurs twice or more on average; a costlier repair pays
    off with fewer repeats); ``repair`` must be a function of each value alone, nulls
    staying null.

    Whether a column repeats its values is guessed from a sample first, so a column of
    names or addresses is not hashed whole only to find that it does not.
    """
    if len(values) >= 4 * _SAMPLE and (
        pc.count_distinct(values.slice(0, _SAMPLE)).as_py() <= 0.85 * _SAMPLE
    ):  # repeats in the sample (30,000 distinct in 250,000 rows: ≈ 77 % distinct in it)
        encoded = pc.dictionary_encode(values.cast(pa.string()))
        if len(encoded.dictionary) <= most * len(values):
            return pc.take(repair(encoded.dictionary), encoded.indices)
    return repair(values)


_SAMPLE = 16_384  # values looked at to guess whether a column repeats its values


def _passes(values: pa.Array, ok_where_present: np.ndarray) -> np.ndarray:
    return values.is_null().to_numpy(zero_copy_only=False) | ok_where_present


def _matches(values: pa.Array, pattern: str) -> np.ndarray:
    """The whole value matches ``pattern`` (RE2 over Arrow; nulls: False)."""
    return _bools(pc.match_substring_regex(values, f"^(?:{pattern})$"))


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


@cache
def _division_code_set() -> pa.Array:
    return pa.array(sorted(division_codes()), pa.string())


@cache
def _division_numbers() -> np.ndarray:
    return np.array(sorted(int(c) for c in division_codes() if c.isdigit()), dtype=np.int64)


def build_tables() -> None:
    """Build the division-code tables now rather than in the first check that needs them."""
    _division_code_set()
    _division_numbers()
    _never_utf8("gbk")  # the catalog's one GBK source


def valid_division_code(values: Column) -> np.ndarray:
    values = _text(values)
    return _passes(values, _bools(pc.is_in(values, value_set=_division_code_set())))


def _date_parts(text: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month and day of ``YYYY-MM-DD…`` byte-matrix rows."""
    return digit_numbers(text[:, 0:4]), digit_numbers(text[:, 5:7]), digit_numbers(text[:, 8:10])


def _valid_resident_ids(ids: np.ndarray, as_of: date) -> np.ndarray:
    """GB 11643 on an (n, 18) byte matrix of shaped IDs (``catalog.identifiers``), and a
    real (possibly retired) division code."""
    divisions = _division_numbers()
    division = digit_numbers(ids[:, :6])
    at = np.minimum(np.searchsorted(divisions, division), len(divisions) - 1)
    return resident_id_bytes_valid(ids, as_of) & (divisions[at] == division)


def valid_resident_id(values: Column, as_of: date) -> np.ndarray:
    """18 chars, right check char, a birth date that exists and is not after ``as_of``, a real
    (possibly retired) division code."""
    values = _text(values)
    shaped = _matches(values, r"[1-9][0-9]{16}[0-9X]")
    ok = np.zeros(len(values), dtype=bool)
    if shaped.any():
        ok[shaped] = _valid_resident_ids(byte_matrix(values.filter(pa.array(shaped)), 18), as_of)
    return _passes(values, ok)


def _shaped_and_checked(
    values: Column, pattern: str, width: int, check: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Values that match ``pattern`` and pass ``check`` (run only on those, as an (n, width)
    byte matrix); nulls pass."""
    values = _text(values)
    shaped = _matches(values, pattern)
    ok = np.zeros(len(values), dtype=bool)
    if shaped.any():
        ok[shaped] = check(byte_matrix(values.filter(pa.array(shaped)), width))
    return _passes(values, ok)


def _part(codes: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Characters ``start:stop`` of byte-matrix codes as numpy ``S`` strings (what the
    identifier maths in ``catalog.identifiers`` reads without converting)."""
    return np.ascontiguousarray(codes[:, start:stop]).view(f"S{stop - start}").reshape(-1)


def _char(codes: np.ndarray, at: int) -> np.ndarray:
    """Character ``at`` of byte-matrix codes, as the ``U1`` the check-char functions return."""
    return _part(codes, at, at + 1).astype("U1")


def _org_code_check_ok(codes: np.ndarray) -> np.ndarray:
    return org_code_check_chars(_part(codes, 0, 8)) == _char(codes, 8)


def valid_org_code(values: Column) -> np.ndarray:
    return _shaped_and_checked(values, r"[0-9A-Z]{8}[0-9X]", 9, _org_code_check_ok)


def valid_uscc(values: Column) -> np.ndarray:
    """Shape, GB 32100 check char, and the check char of the embedded organisation code."""
    return _shaped_and_checked(
        values,
        rf"[{USCC_CHARS}]{{2}}[0-9]{{6}}[{USCC_CHARS}]{{10}}",
        18,
        lambda codes: (
            (uscc_check_chars(_part(codes, 0, 17)) == _char(codes, 17))
            & _org_code_check_ok(codes[:, 8:17])
        ),
    )


def valid_business_reg_no(values: Column) -> np.ndarray:
    return _shaped_and_checked(
        values,
        r"[0-9]{15}",
        15,
        lambda codes: business_reg_no_check_digits(_part(codes, 0, 14)) == _char(codes, 14),
    )


def _cut(values: pa.Array, start: int, stop: int) -> pa.Array:
    return pc.utf8_slice_codeunits(values, start, stop)


def valid_tax_no(values: Column, as_of: date) -> np.ndarray:
    """A USCC, an old 15-char number (division + org code), or a resident ID + 2 digits."""
    values = _text(values)
    as_uscc = valid_uscc(values) & values.is_valid().to_numpy(zero_copy_only=False)
    old = _matches(values, r"[0-9]{6}[0-9A-Z]{8}[0-9X]")
    old &= valid_org_code(_cut(values, 6, 15)) & valid_division_code(_cut(values, 0, 6))
    personal = _matches(values, r"[0-9]{17}[0-9X][0-9]{2}")
    personal &= valid_resident_id(_cut(values, 0, 18), as_of)
    return _passes(values, as_uscc | old | personal)


def valid_applicant_id(values: Column, as_of: date) -> np.ndarray:
    values = _text(values)
    return valid_resident_id(values, as_of) | valid_uscc(values)


def valid_phone(values: Column) -> np.ndarray:
    """A mobile (11 digits from 13x–19x) or a landline with area code."""
    values = _text(values)
    return _passes(values, _matches(values, r"1[3-9][0-9]{9}|0[1-9][0-9]{8,10}"))


def valid_date(values: Column) -> np.ndarray:
    """An existing date in canonical ``YYYY-MM-DD`` form (what standardisation produces)."""

    def exists(text: np.ndarray) -> np.ndarray:
        year, month, day = _date_parts(text)
        return real_dates(year, month, day) & (year >= 1900) & (year <= 2100)

    return _shaped_and_checked(values, r"[0-9]{4}-[0-9]{2}-[0-9]{2}", 10, exists)


def valid_datetime(values: Column) -> np.ndarray:
    """An existing moment in canonical ``YYYY-MM-DD HH:MM:SS`` form (it is compared as text).

    Seconds 60 and 61 are accepted and read as the next minute, as pandas (the rule's
    first formulation) and the typed clean column's parse read them; the year, after
    that rounding, must lie in 1900–2100.
    """

    def exists(text: np.ndarray) -> np.ndarray:
        year, month, day = _date_parts(text)
        hour, minute = digit_numbers(text[:, 11:13]), digit_numbers(text[:, 14:16])
        second = digit_numbers(text[:, 17:19])
        new_year = (month == 12) & (day == 31) & (hour == 23) & (minute == 59) & (second >= 60)
        year = year + new_year
        return (
            real_dates(year - new_year, month, day)
            & (hour <= 23)
            & (minute <= 59)
            & (second <= 61)
            & (year >= 1900)
            & (year <= 2100)
        )

    pattern = r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
    return _shaped_and_checked(values, pattern, 19, exists)


def valid_enterprise_name(values: Column) -> np.ndarray:
    values = _text(values)
    return _passes(values, _bools(pc.greater_equal(pc.utf8_length(values), 2)))


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


def _flag(values: pa.Array, pattern: str) -> np.ndarray:
    found = pc.match_substring_regex(values, pattern)
    return pc.fill_null(found, False).to_numpy(zero_copy_only=False)


def intact_text(values: Column) -> np.ndarray:
    """No NUL, no control character, no replacement character (decoding damage).

    One numpy pass over the column's UTF-8 bytes finds the few values that could hold
    one (a byte below 0x20 or 0x7f, or the lead byte of U+0080–U+00BF or of U+F000–U+FFFF);
    the exact pattern runs on those values only.
    """
    values = _text(values)
    suspect = rows_with_byte(values, _SUSPECT_BYTES)
    broken = np.zeros(len(values), dtype=bool)
    if suspect.any():
        broken[suspect] = _flag(values.filter(pa.array(suspect)), BROKEN_TEXT)
    return ~broken


_SUSPECT_BYTES = np.zeros(256, dtype=bool)
_SUSPECT_BYTES[[*range(0x20), 0x7F, 0xC2, 0xEF]] = True  # see intact_text


def rows_with_byte(values: pa.Array, wanted: np.ndarray) -> np.ndarray:
    """True for each value with at least one byte that ``wanted`` (a 256-entry mask) marks."""
    values = _text(values)
    n = len(values)
    if n == 0 or values.buffers()[2] is None:
        return np.zeros(n, dtype=bool)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + n + 1
    ]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    hits = np.flatnonzero(wanted[data]) + offsets[0]
    rows = np.zeros(n, dtype=bool)
    rows[np.searchsorted(offsets, hits, side="right") - 1] = True
    return rows & values.is_valid().to_numpy(zero_copy_only=False)


def not_mojibake(values: Column, encoding: str) -> np.ndarray:
    """Fails a value that is UTF-8 mis-read as ``encoding`` (张三 read as GBK: 寮犱笁).

    Encoded back to ``encoding``, such a value gives bytes that are valid UTF-8 and decode
    to Chinese text, different from the value. A real GBK value almost never does (over
    the simulator's 250,000 names, addresses and codes: none). Vectorised: the candidate
    values are joined into one string (line feed between, a byte GBK never uses inside a
    character), encoded and decoded once, and split again; a column that repeats its
    values (employers, statuses) once per distinct value.
    """
    text = _text(values)
    if pc.all(pc.fill_null(pc.string_is_ascii(text), True)).as_py():
        return np.ones(len(text), dtype=bool)  # codes, dates, numbers: nothing to misread
    ok = once_per_value(text, lambda distinct: pa.array(_not_mojibake(distinct, encoding)))
    return pc.fill_null(ok, True).to_numpy(zero_copy_only=False)


def _not_mojibake(text: pa.Array, encoding: str) -> np.ndarray:
    ok = np.ones(len(text), dtype=bool)
    candidate = ~pc.fill_null(pc.string_is_ascii(text), True).to_numpy(zero_copy_only=False)
    if candidate.any():  # most Chinese text fails at its first character: no round trip
        candidate &= ~_starts_never_utf8(text, _never_utf8(encoding))
    back = _round_trip(text.filter(pa.array(candidate)), encoding) if candidate.any() else None
    if candidate.any() and back is None:  # a value holds the line feed that joins them
        candidate &= ~_bools(pc.match_substring(text, "\n"))
        back = _round_trip(text.filter(pa.array(candidate)), encoding)
    if not candidate.any():
        return ok
    utf8 = ~_bools(pc.match_substring(back, "\ufffd"))  # the bytes were valid UTF-8: rare
    if utf8.any():
        where = np.flatnonzero(candidate)[utf8]
        back, shown = back.filter(pa.array(utf8)), text.take(pa.array(where))
        mojibake = (
            _flag(back, _CJK_ONLY)
            & _flag(back, f"[{_CJK}]")
            & ~pc.equal(back, shown).to_numpy(zero_copy_only=False)
            & ~_flag(shown, BROKEN_TEXT)  # decoding damage: intact_text reports it
        )
        ok[where] = ~mojibake
    return ok


@cache
def _never_utf8(encoding: str) -> np.ndarray:
    """Code point (U+0080–U+FFFF) → True where the character's bytes in ``encoding`` cannot
    begin valid UTF-8 (a lead byte outside C2–F4, or a second byte that is not 80–BF).

    A value whose first character is such a one encodes to bytes that are not UTF-8 from
    the start, so its round trip holds U+FFFD: it is not UTF-8 misread as ``encoding``.
    About three Chinese characters in four are such a one in GBK."""
    never = np.zeros(0x10000, dtype=bool)
    for point in range(0x80, 0x10000):
        if 0xD800 <= point <= 0xDFFF:
            continue
        try:
            code = chr(point).encode(encoding)
        except UnicodeEncodeError:
            continue  # becomes "?" in the round trip: judged by it
        if code[0] >= 0x80:
            never[point] = not (
                0xC2 <= code[0] <= 0xF4 and len(code) > 1 and 0x80 <= code[1] <= 0xBF
            )
    return never


def _starts_never_utf8(text: pa.Array, never: np.ndarray) -> np.ndarray:
    """True for each value whose first character (of U+0080–U+FFFF) ``never`` marks."""
    n = len(text)
    found = np.zeros(n, dtype=bool)
    if n == 0 or text.buffers()[2] is None:
        return found
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + n + 1]
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    last = len(data) - 1

    def byte(k: int) -> np.ndarray:
        return data[np.minimum(starts + k, last)].astype(np.int32)

    first, second, third = byte(0), byte(1), byte(2)
    two = (lengths >= 2) & (first >= 0xC2) & (first < 0xE0)
    three = (lengths >= 3) & (first >= 0xE0) & (first < 0xF0)
    found[two] = never[((first[two] & 0x1F) << 6) | (second[two] & 0x3F)]
    found[three] = never[
        ((first[three] & 0x0F) << 12) | ((second[three] & 0x3F) << 6) | (third[three] & 0x3F)
    ]
    return found & text.is_valid().to_numpy(zero_copy_only=False)


def _round_trip(shown: pa.Array, encoding: str) -> pa.Array | None:
    """Each value encoded to ``encoding`` and decoded as UTF-8 (one join, one codec call);
    None when a value holds a line feed, so the split would not give one part per value."""
    if len(shown) == 0:
        return pa.array([], pa.string())
    joined = pc.binary_join(pa.ListArray.from_arrays([0, len(shown)], shown), "\n")[0].as_py()
    as_utf8 = joined.encode(encoding, errors="replace").decode("utf-8", errors="replace")
    back = pc.split_pattern(pa.array([as_utf8]), "\n").flatten()
    return back if len(back) == len(shown) else None


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


def id_agrees_with_birth_date_and_sex(id_no: Column, birth_date: Column, sex: Column) -> np.ndarray:
    """Where an ID is present: its birth date and sex digit agree with the other fields.

    IDs of 18 ASCII bytes (nearly all) are compared as byte matrices straight from the
    Arrow buffers; any other ID by the same comparison on text (:func:`_id_agrees_text`).
    """
    id_no, birth_date, sex = _text(id_no), _text(birth_date), _text(sex)
    ok = np.ones(len(id_no), dtype=bool)  # an ID that is missing has nothing to disagree
    shaped = _bools(pc.and_(pc.equal(pc.binary_length(id_no), 18), pc.string_is_ascii(id_no)))
    other = id_no.is_valid().to_numpy(zero_copy_only=False) & ~shaped
    for rows, agrees in ((shaped, _id_agrees_bytes), (other, _id_agrees_text)):
        if rows.any():
            where = pa.array(rows)
            ok[rows] = agrees(id_no.filter(where), birth_date.filter(where), sex.filter(where))
    return ok


def _id_agrees_bytes(id_no: pa.Array, birth_date: pa.Array, sex: pa.Array) -> np.ndarray:
    """:func:`_id_agrees_text` for IDs of exactly 18 ASCII bytes, on their bytes."""
    ids = byte_matrix(id_no, 18)
    ten = _bools(pc.equal(pc.binary_length(birth_date), 10))
    id_birth = np.full((int(ten.sum()), 10), ord("-"), dtype=np.uint8)  # YYYY-MM-DD
    id_birth[:, [0, 1, 2, 3, 5, 6, 8, 9]] = ids[ten][:, 6:14]
    birth_ok = birth_date.is_null().to_numpy(zero_copy_only=False)
    birth_ok[ten] = (byte_matrix(birth_date.filter(pa.array(ten)), 10) == id_birth).all(axis=1)
    digit = ids[:, 16]  # odd: male; not an ASCII digit: nothing to compare
    is_digit = (digit >= ord("0")) & (digit <= ord("9"))
    male = is_digit & (digit % 2 == 1)  # "1", "3" … are odd bytes too
    said_male, said_female = _bools(pc.equal(sex, "男")), _bools(pc.equal(sex, "女"))
    sex_ok = sex.is_null().to_numpy(zero_copy_only=False) | ~is_digit
    sex_ok |= np.where(male, said_male, said_female)
    return birth_ok & sex_ok


def _id_agrees_text(id_no: pa.Array, birth_date: pa.Array, sex: pa.Array) -> np.ndarray:
    """The ID's characters 7–14 as ``YYYY-MM-DD`` equal the birth date, and its 17th
    character, a digit, is odd for 男 and even for 女 (missing values agree)."""
    id_birth = pc.binary_join_element_wise(
        _cut(id_no, 6, 10), _cut(id_no, 10, 12), _cut(id_no, 12, 14), "-"
    )
    birth_ok = pc.fill_null(pc.or_(pc.is_null(birth_date), pc.equal(id_birth, birth_date)), True)
    digit = _cut(id_no, 16, 17)
    is_digit = _bools(pc.match_substring_regex(digit, "^[0-9]$"))
    male = _bools(pc.is_in(digit, value_set=pa.array(list("13579"))))
    id_sex = pa.array(np.where(male, "男", "女"), pa.string())
    sex_same = pc.fill_null(pc.equal(sex, id_sex), True).to_numpy(zero_copy_only=False)
    sex_ok = sex.is_null().to_numpy(zero_copy_only=False) | ~is_digit | sex_same
    ok = birth_ok.to_numpy(zero_copy_only=False) & sex_ok
    return id_no.is_null().to_numpy(zero_copy_only=False) | ok


def not_before(later: Column, earlier: Column) -> np.ndarray:
    """``later >= earlier`` where both are present (ISO strings compare as times)."""
    later, earlier = _text(later), _text(earlier)
    return pc.fill_null(pc.greater_equal(later, earlier), True).to_numpy(zero_copy_only=False)


def id_kind_matches_applicant_type(
    applicant_id: Column, applicant_type: Column, as_of: date
) -> np.ndarray:
    """Natural persons apply with a resident ID, legal persons with a USCC."""
    applicant_id, applicant_type = _text(applicant_id), _text(applicant_type)
    present = applicant_id.is_valid().to_numpy(zero_copy_only=False)
    person = _bools(pc.equal(applicant_type, "自然人")) & present
    legal = _bools(pc.equal(applicant_type, "法人")) & present
    ok = np.ones(len(applicant_id), dtype=bool)
    ok[person] = valid_resident_id(applicant_id.filter(pa.array(person)), as_of)
    ok[legal] = valid_uscc(applicant_id.filter(pa.array(legal)))
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
