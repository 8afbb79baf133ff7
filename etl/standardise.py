"""Make delivered values canonical before validation, where the repair is certain.

Whole-column pyarrow compute operations only. What cannot be repaired with certainty is
left as delivered, so validation quarantines it with the original value in the reason
rather than the lake guessing.

Repairs: NFKC (full-width → half-width, （）→ ()), zero-width characters and stray spaces,
lowercase ``x`` in IDs, 15-digit IDs upgraded to 18, every delivered date format to ISO,
phones to bare digits, traditional → simplified characters in names, and a normalised
enterprise name column (有限责任公司 → 有限公司, city prefix dropped) beside the original.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.definitions import DatasetDef, FieldDef
from catalog.identifiers import upgrade_resident_id15
from etl.rules import once_per_value, rows_with_byte
from etl.zones import NORMALISED_SUFFIX

ZERO_WIDTH = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
# UTF-8 lead bytes of anything but ASCII and U+4000–U+9FFF (CJK ideographs, Extension A's
# tail, Yijing hexagrams: none has a compatibility decomposition): a value with one may change
_NOT_NFKC_STABLE_LEAD = np.zeros(256, dtype=bool)
_NOT_NFKC_STABLE_LEAD[[*range(0xC0, 0xE4), *range(0xEA, 0x100)]] = True
# bytes of RE2's ``\s`` ([\t\n\f\r ], ASCII only), and \v: a value without any is left
# as it is by every whitespace repair below
_SPACE_BYTES = np.zeros(256, dtype=bool)
_SPACE_BYTES[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20]] = True
# what an identifier repair can change: spaces, hyphens, lower case (ASCII or not)
_IDENTIFIER_DIRT = _SPACE_BYTES.copy()
_IDENTIFIER_DIRT[[ord("-"), *range(ord("a"), ord("z") + 1), *range(0x80, 0x100)]] = True
_NOT_DIGIT = np.ones(256, dtype=bool)
_NOT_DIGIT[ord("0") : ord("9") + 1] = False
_DATE = r"(?P<y>\d{4})(?:[-/.年](?P<m>\d{1,2})[-/.月](?P<d>\d{1,2})日?|(?P<m2>\d{2})(?P<d2>\d{2}))"
_TIME = r"(?:[ T]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?"
# what canonical_dates produces: such values map to themselves
_CANONICAL_DATE = r"^\d{4}-\d{2}-\d{2}$"
_CANONICAL_DATETIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


@dataclass
class StandardiseReport:
    """How many values each field had repaired (a value counts once, whatever the repairs)."""

    repaired: dict[str, int] = field(default_factory=dict)

    def add(self, other: StandardiseReport) -> None:
        for name, n in other.repaired.items():
            self.repaired[name] = self.repaired.get(name, 0) + n


def standardise(
    table: pa.Table | pa.RecordBatch, dataset: DatasetDef
) -> tuple[pa.Table, StandardiseReport]:
    """Canonical values for every catalog field present; adds ``<name>_norm`` columns."""
    table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
    report = StandardiseReport()
    for f in dataset.fields:
        if f.name not in table.column_names:
            continue
        original = table.column(f.name).combine_chunks()
        if f.rule == "enterprise_name":  # both spellings from one pass over distinct names
            both = once_per_value(original, partial(_name_and_normalised, f=f), 0.75)
            canonical, normalised = pc.struct_field(both, 0), pc.struct_field(both, 1)
        else:
            canonical = _per_distinct_value(original, f)
        changed = pc.sum(pc.fill_null(pc.not_equal(original, canonical), False)).as_py() or 0
        report.repaired[f.name] = changed
        table = table.set_column(table.column_names.index(f.name), f.name, canonical)
        if f.rule == "enterprise_name":
            table = table.append_column(f.name + NORMALISED_SUFFIX, normalised)
    return table, report


def _name_and_normalised(names: pa.Array, f: FieldDef) -> pa.StructArray:
    """An enterprise name's canonical form and its normalised spelling, side by side (the
    normalising regexes cost enough to be worth a dictionary at 3 in 4 names distinct)."""
    canonical = standardise_column(names, f)
    return pa.StructArray.from_arrays(
        [canonical, normalised_enterprise_name(canonical)], names=["canonical", "normalised"]
    )


def _per_distinct_value(values: pa.Array, f: FieldDef) -> pa.Array:
    """:func:`standardise_column`, run once per distinct value where a column repeats its
    values (sex, status, employers …): every repair is a function of the value alone."""
    return once_per_value(values, lambda distinct: standardise_column(distinct, f))


def standardise_column(values: pa.Array, f: FieldDef) -> pa.Array:
    """The canonical form of one column, by the field's rule, PII kind and type."""
    values = clean_text(values)
    rule = f.rule
    if rule in {"resident_id", "applicant_id"}:
        return upgrade_short_ids(_identifier_text(values))
    if rule in {"uscc", "org_code", "tax_no", "business_reg_no"}:
        return _identifier_text(values)
    if rule == "phone":
        return canonical_phone(values)
    if f.type == "date" or rule == "date":
        return canonical_dates(values, with_time=False)
    if f.type == "datetime" or rule == "datetime":
        return canonical_dates(values, with_time=True)
    if f.pii == "name" or rule == "enterprise_name":
        return simplified_chinese(_without_spaces_in_cjk(values))
    return values


def clean_text(values: pa.Array) -> pa.Array:
    """NFKC, no zero-width characters, trimmed; empty strings become nulls.

    Text made only of ASCII and U+4000–U+9FFF (CJK ideographs) is its own NFKC form and
    holds no zero-width character, so those two repairs run only on the values with
    anything else in them (full-width forms, compatibility ideographs, odd spaces): a
    few in a million. One numpy pass over the UTF-8 lead bytes finds them.
    """
    values = _one_array(values)
    values = values.cast(pa.string())
    if not pc.all(pc.fill_null(pc.string_is_ascii(values), True)).as_py():
        foreign = pa.array(rows_with_byte(values, _NOT_NFKC_STABLE_LEAD))
        if pc.any(foreign).as_py():
            repaired = _unicode_repairs(pc.filter(values, foreign))
            values = pc.replace_with_mask(values, foreign, repaired)
    values = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _unicode_repairs(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(pc.utf8_normalize(values, form="NFKC"), ZERO_WIDTH, "")


def _only_where(
    values: pa.Array, where: np.ndarray, repair: Callable[[pa.Array], pa.Array]
) -> pa.Array:
    """``repair(values)`` where ``repair`` would leave every row outside ``where`` as it
    is: computed on the flagged rows alone (nearly always a few), the rest untouched."""
    if not where.any():
        return values
    if where.all():
        return repair(values)
    mask = pa.array(where)
    return pc.replace_with_mask(values, mask, repair(values.filter(mask)))


def _identifier_text(values: pa.Array) -> pa.Array:
    """Codes carry no spaces or hyphens (``XXXXXXXX-X`` org codes), letters upper case."""
    values = _one_array(values)
    return _only_where(values, rows_with_byte(values, _IDENTIFIER_DIRT), _identifier_repair)


def _identifier_repair(values: pa.Array) -> pa.Array:
    return pc.utf8_upper(pc.replace_substring_regex(values, r"[\s\-]", ""))


def upgrade_short_ids(values: pa.Array) -> pa.Array:
    """15-digit (pre-1999) resident IDs become their 18-character form."""
    values = _one_array(values)
    short = pc.fill_null(pc.equal(pc.binary_length(values), 15), False)  # 15 bytes …
    if not pc.any(short).as_py():
        return values
    fifteen = np.flatnonzero(short.to_numpy(zero_copy_only=False))
    digits = pc.match_substring_regex(values.take(pa.array(fifteen)), r"^[0-9]{15}$")
    short = np.zeros(len(values), dtype=bool)  # … that are 15 digits
    short[fifteen[digits.to_numpy(zero_copy_only=False)]] = True
    if not short.any():
        return values
    short = pa.array(short)
    upgraded = upgrade_resident_id15(pc.filter(values, short).to_numpy(zero_copy_only=False))
    return _replaced(values, short, upgraded.tolist())


def _one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (callers hand in chunked columns too); masks need one."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def _replaced(values: pa.Array, where: pa.Array, replacements: list[str]) -> pa.Array:
    """``values`` with the rows flagged in ``where`` replaced, in order (the rest untouched,
    no round trip of the whole column through Python objects)."""
    return pc.replace_with_mask(values, where, pa.array(replacements, pa.string()))


def canonical_phone(values: pa.Array) -> pa.Array:
    """Digits only; a leading +86/86 country code dropped from 13-digit mobiles.

    A value of digits only that is not 13 long is already canonical (nearly all)."""
    values = _one_array(values)
    todo = rows_with_byte(values, _NOT_DIGIT)
    todo |= pc.fill_null(pc.equal(pc.binary_length(values), 13), False).to_numpy(
        zero_copy_only=False
    )
    return _only_where(values, todo, _canonical_phone)


def _canonical_phone(values: pa.Array) -> pa.Array:
    digits = pc.replace_substring_regex(values, r"[^0-9]", "")
    with_cc = pc.fill_null(pc.match_substring_regex(digits, r"^861[3-9][0-9]{9}$"), False)
    return pc.if_else(with_cc, pc.utf8_slice_codeunits(digits, 2), digits)


def canonical_dates(values: pa.Array, *, with_time: bool) -> pa.Array:
    """``2017/2/23``, ``20170223``, ``2017年2月23日`` … → ``2017-02-23`` (+ `` HH:MM:SS``).

    Values that match no known format are left as they are for validation to reject.
    Values already in the canonical form (nearly all) are left alone without parsing them.
    """
    values = _one_array(values)
    canonical = _CANONICAL_DATETIME if with_time else _CANONICAL_DATE
    todo = pc.invert(pc.fill_null(pc.match_substring_regex(values, canonical), True))
    if not pc.any(todo).as_py():
        return values
    repaired = _canonical_dates(pc.filter(values, todo), with_time=with_time)
    return pc.replace_with_mask(values, todo, repaired)


def _canonical_dates(values: pa.Array, *, with_time: bool) -> pa.Array:
    """The parse behind :func:`canonical_dates`, for every value it is given."""
    pattern = "^" + _DATE + (_TIME if with_time else "") + "$"
    parts = pc.extract_regex(values, pattern)
    matched = pc.fill_null(pc.is_valid(parts), False)

    def part(name: str, width: int) -> pa.Array:
        return pc.utf8_lpad(pc.struct_field(parts, name), width=width, padding="0")

    month = pc.if_else(
        pc.equal(pc.struct_field(parts, "m"), ""),
        pc.struct_field(parts, "m2"),
        pc.struct_field(parts, "m"),
    )
    day = pc.if_else(
        pc.equal(pc.struct_field(parts, "d"), ""),
        pc.struct_field(parts, "d2"),
        pc.struct_field(parts, "d"),
    )
    iso = pc.binary_join_element_wise(
        pc.struct_field(parts, "y"),
        pc.utf8_lpad(month, width=2, padding="0"),
        pc.utf8_lpad(day, width=2, padding="0"),
        "-",
    )
    if with_time:
        has_time = pc.not_equal(pc.struct_field(parts, "H"), "")
        seconds = pc.if_else(
            pc.equal(pc.struct_field(parts, "S"), ""), "00", pc.struct_field(parts, "S")
        )
        clock = pc.binary_join_element_wise(
            part("H", 2), pc.struct_field(parts, "M"), pc.utf8_lpad(seconds, 2, "0"), ":"
        )
        clock = pc.if_else(has_time, clock, "00:00:00")
        iso = pc.binary_join_element_wise(iso, clock, " ")
    return pc.if_else(matched, iso, values)


def _without_spaces_in_cjk(values: pa.Array) -> pa.Array:
    """``陈 大文`` → ``陈大文``: Chinese names never contain spaces (Latin names keep theirs)."""
    values = _one_array(values)
    return _only_where(values, rows_with_byte(values, _SPACE_BYTES), _cjk_without_spaces)


def _cjk_without_spaces(values: pa.Array) -> pa.Array:
    cjk = pc.fill_null(pc.match_substring_regex(values, r"[\x{4e00}-\x{9fff}]"), False)
    if not pc.any(cjk).as_py():
        return values
    joined = pc.replace_substring_regex(pc.filter(values, cjk), r"\s+", "")
    return pc.replace_with_mask(values, cjk, joined)


def simplified_chinese(values: pa.Array) -> pa.Array:
    """Traditional-only characters → simplified (OpenCC's table), only in rows that have them."""
    values = _one_array(values)
    needs = pc.fill_null(pc.match_substring_regex(values, _traditional_class()), False)
    if not pc.any(needs).as_py():
        return values
    table = _traditional_table()
    found = pc.filter(values, needs).to_pylist()
    return _replaced(values, needs, [v.translate(table) for v in found])  # a few % of rows


def normalised_enterprise_name(values: pa.Array) -> pa.Array:
    """One spelling per enterprise name, for matching (the delivered name stays as is)."""
    values = pc.replace_substring_regex(values, r"\s+", "")
    values = pc.replace_substring_regex(values, r"^(广东省)?江门市", "")
    values = pc.replace_substring(values, "有限责任公司", "有限公司")
    return pc.replace_substring(pc.replace_substring(values, "（", "("), "）", ")")


@cache
def _opencc():
    import opencc

    return opencc.OpenCC("t2s")


@cache
def _traditional_table() -> dict[int, str]:
    """Character → simplified character, for the traditional-only characters OpenCC changes.

    Built once from OpenCC's t2s conversion of every CJK character, one by one, so a
    character is never converted because of its neighbours.
    """
    converter = _opencc()
    table = {}
    for code in range(0x4E00, 0xA000):
        char = chr(code)
        simplified = converter.convert(char)
        if simplified != char and len(simplified) == 1 and _traditional_only(char):
            table[code] = simplified
    return table


@cache
def _traditional_class() -> str:
    """A regex character class of the characters :func:`_traditional_table` converts."""
    return "[" + "".join(chr(c) for c in _traditional_table()) + "]"


def build_tables() -> None:
    """Build the traditional-character table now (≈ 0.1 s) rather than in the first task."""
    _traditional_class()


def _traditional_only(char: str) -> bool:
    """Not a character of simplified text (GB 2312) as well.

    OpenCC maps 於→于 and 乾→干, but 於 and 乾 are also simplified-era surnames and given
    names: converting them would change a correct name. Only characters that simplified
    text never uses (陳, 黃, 張 …) are certain repairs.
    """
    try:
        char.encode("gb2312")
    except UnicodeEncodeError:
        return True
    return False
