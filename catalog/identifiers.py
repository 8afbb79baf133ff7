"""Chinese identifier rules (docs/architecture.md §4), vectorised over whole columns.

Every function takes and returns numpy arrays so that generating or checking millions of
identifiers costs a few matrix operations, not a Python loop per row. Inputs to the
``*_check_chars`` functions must already have the right length and alphabet; use the
``is_valid_*`` functions on dirty data, which check shape first.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# GB/T 2260 division codes of Jiangmen. Retired codes stay valid: IDs issued under them live on.
JIANGMEN_DIVISIONS: dict[str, str] = {
    "440703": "蓬江区",
    "440704": "江海区",
    "440705": "新会区",
    "440781": "台山市",
    "440783": "开平市",
    "440784": "鹤山市",
    "440785": "恩平市",
}
JIANGMEN_RETIRED_DIVISIONS: dict[str, str] = {
    "440702": "城区 (1984-1994)",
    "440711": "郊区 (1984-1994)",
    "440721": "新会县 (former county)",
    "440722": "台山县 (former county)",
    "440723": "恩平县 (former county)",
    "440724": "开平县 (former county)",
    "440725": "鹤山县 (former county)",
    "440782": "新会市 (1992-2002)",
}

RESIDENT_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
RESIDENT_ID_CHECK = np.array(list("10X98765432"))

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28])

ORG_CODE_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2])


def _char_lut(alphabet: dict[str, int]) -> np.ndarray:
    lut = np.full(256, -1, dtype=np.int64)
    for char, value in alphabet.items():
        lut[ord(char)] = value
    return lut


_DIGIT_LUT = _char_lut({str(d): d for d in range(10)})
_USCC_LUT = _char_lut({c: i for i, c in enumerate(USCC_ALPHABET)})
# GB 11714: digits keep their value, letters A..Z count 10..35.
_ORG_LUT = _char_lut({str(d): d for d in range(10)} | {chr(65 + i): 10 + i for i in range(26)})
_ORG_CHECK = np.array(list("0123456789X0"))  # index = 11 - (sum mod 11), 1..11


def _char_values(codes: np.ndarray | list[str], width: int, lut: np.ndarray) -> np.ndarray:
    """Map an array of ASCII strings of equal ``width`` to an (n, width) matrix of values."""
    raw = np.asarray(codes, dtype=f"S{width}")
    matrix = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(-1, width)
    return lut[matrix]


def resident_id_check_chars(body17: np.ndarray | list[str]) -> np.ndarray:
    """Check characters (GB 11643) for 17-digit ID bodies."""
    values = _char_values(body17, 17, _DIGIT_LUT)
    return RESIDENT_ID_CHECK[(values @ RESIDENT_ID_WEIGHTS) % 11]


def make_resident_ids(
    division: np.ndarray, birth_yyyymmdd: np.ndarray, seq: np.ndarray
) -> np.ndarray:
    """18-character resident IDs from division code, birth date (as int YYYYMMDD) and sequence."""
    body = (
        np.asarray(division, dtype=np.int64) * 10**11
        + np.asarray(birth_yyyymmdd, dtype=np.int64) * 1000
        + np.asarray(seq, dtype=np.int64)
    ).astype("U17")
    return np.char.add(body, resident_id_check_chars(body))


def upgrade_resident_id15(id15: np.ndarray | list[str]) -> np.ndarray:
    """Upgrade 15-digit IDs (pre-1999) to 18: insert ``19`` before the year, add the check."""
    id15 = np.asarray(id15, dtype="U15")
    body = np.char.add(np.char.add(_slice(id15, 0, 6), "19"), _slice(id15, 6, 15))
    return np.char.add(body, resident_id_check_chars(body))


def downgrade_resident_id18(id18: np.ndarray | list[str]) -> np.ndarray:
    """The 15-digit form an 18-digit ID of someone born in the 1900s had before 1999."""
    id18 = np.asarray(id18, dtype="U18")
    return np.char.add(_slice(id18, 0, 6), _slice(id18, 8, 17))


def is_valid_resident_id(ids: np.ndarray | list[str] | pa.Array, born_by: date) -> np.ndarray:
    """True where a value is an 18-char resident ID with a correct check char and a birth date
    that exists and is not after ``born_by``.

    ``born_by`` is the night's partition date, never the machine's clock: whether a record
    is valid must not depend on when the night runs (docs/decisions/0003, "reference date").

    The division code is only checked for shape here (6 digits, not starting with 0):
    which division codes are real is a catalog-level rule. Works on the IDs' bytes as one
    (n, 18) matrix: no regex, no date parsing per value.
    """
    text = _as_arrow_text(ids)
    valid = np.zeros(len(text), dtype=bool)
    sized = pc.fill_null(pc.equal(pc.binary_length(text), 18), False)
    where = np.flatnonzero(sized.to_numpy(zero_copy_only=False))
    if not len(where):
        return valid
    m = byte_matrix(pc.take(text, pa.array(where)), 18)
    last = m[:, 17]
    shaped = ((m[:, :17] - np.uint8(48)) <= 9).all(axis=1) & (m[:, 0] != ord("0"))
    shaped &= ((last >= ord("0")) & (last <= ord("9"))) | (last == ord("X"))
    ok = shaped & resident_id_bytes_valid(m, born_by)
    valid[where] = ok
    return valid


_RESIDENT_ID_CHECK_BYTES = np.frombuffer(b"10X98765432", dtype=np.uint8)
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def byte_matrix(values: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    """ASCII strings of exactly ``width`` bytes (checked by the caller) as an (n, width)
    uint8 matrix, straight from the Arrow buffers (no copy)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    first = int(offsets[values.offset])  # a sliced array starts part-way into its buffer
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    return data[first : first + width * len(values)].reshape(-1, width)


def digit_numbers(digits: np.ndarray) -> np.ndarray:
    """Rows of ASCII digit bytes → their integer value."""
    value = np.zeros(len(digits), dtype=np.int64)
    for column in range(digits.shape[1]):
        value = value * 10 + (digits[:, column].astype(np.int64) - 48)
    return value


def real_dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """True where year-month-day is a day of the proleptic Gregorian calendar."""
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days = _MONTH_DAYS[np.clip(month, 0, 12)] + (leap & (month == 2))
    return (month >= 1) & (month <= 12) & (day >= 1) & (day <= days)


def resident_id_bytes_valid(ids: np.ndarray, born_by: date) -> np.ndarray:
    """GB 11643 on an (n, 18) byte matrix of IDs already shaped ``[1-9][0-9]{16}[0-9X]``:
    the check character, and a birth date that exists, is from 1880 on and not after
    ``born_by`` (the division code is the caller's business)."""
    digits = ids[:, :17].astype(np.int16) - 48
    check = _RESIDENT_ID_CHECK_BYTES[
        (digits * RESIDENT_ID_WEIGHTS.astype(np.int16)).sum(axis=1) % 11
    ]
    year = digit_numbers(ids[:, 6:10])
    month, day = digit_numbers(ids[:, 10:12]), digit_numbers(ids[:, 12:14])
    born = year * 10_000 + month * 100 + day
    limit = born_by.year * 10_000 + born_by.month * 100 + born_by.day
    return (check == ids[:, 17]) & real_dates(year, month, day) & (year >= 1880) & (born <= limit)


def _as_arrow_text(values: np.ndarray | list[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Strings as Arrow (None/NaN → null), whatever container they came in."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values if values.type == pa.string() else values.cast(pa.string())
    return pa.array(pd.Series(values, dtype="string"), type=pa.string())


def uscc_check_chars(body17: np.ndarray | list[str]) -> np.ndarray:
    """Check characters (GB 32100) for 17-char USCC bodies."""
    values = _char_values(body17, 17, _USCC_LUT)
    return np.array(list(USCC_ALPHABET))[(31 - (values @ USCC_WEIGHTS) % 31) % 31]


def org_code_check_chars(body8: np.ndarray | list[str]) -> np.ndarray:
    """Check characters (GB 11714) for 8-char organisation-code bodies."""
    values = _char_values(body8, 8, _ORG_LUT)
    return _ORG_CHECK[11 - (values @ ORG_CODE_WEIGHTS) % 11]


def make_org_codes(body8: np.ndarray | list[str]) -> np.ndarray:
    """9-char organisation codes (no hyphen) from 8-char bodies."""
    body8 = np.asarray(body8, dtype="U8")
    return np.char.add(body8, org_code_check_chars(body8))


def make_usccs(
    authority_type: np.ndarray, division: np.ndarray, org_code9: np.ndarray
) -> np.ndarray:
    """18-char USCCs from the 2-char authority+type prefix, 6-digit division and 9-char org code."""
    body = np.char.add(
        np.char.add(np.asarray(authority_type, dtype="U2"), np.asarray(division, dtype="U6")),
        np.asarray(org_code9, dtype="U9"),
    )
    return np.char.add(body, uscc_check_chars(body))


def business_reg_no_check_digits(body14: np.ndarray | list[str]) -> np.ndarray:
    """Check digits (ISO 7064 MOD 11,10, GS 15-2006) for 14-digit registration-number bodies."""
    values = _char_values(body14, 14, _DIGIT_LUT)
    p = np.full(values.shape[0], 10, dtype=np.int64)
    for column in range(values.shape[1]):
        s = (p + values[:, column]) % 10
        s[s == 0] = 10
        p = (2 * s) % 11
    # choose the check digit c with (p + c) mod 10 == 1
    return ((11 - p) % 10).astype("U1")


def make_business_reg_nos(body14: np.ndarray | list[str]) -> np.ndarray:
    """15-digit business registration numbers from 14-digit bodies."""
    body14 = np.asarray(body14, dtype="U14")
    return np.char.add(body14, business_reg_no_check_digits(body14))


def _slice(values: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Vectorised ``s[start:stop]`` over a fixed-width unicode array."""
    width = values.dtype.itemsize // 4
    chars = values.view("U1").reshape(len(values), width)
    return chars[:, start:stop].copy().view(f"U{stop - start}").reshape(len(values))
