"""Masking operators (DESIGN §6), declared like the design's table and vectorised.

Each operator is a small frozen dataclass: ``Keep()``, ``Drop()``, ``Mask(keep_first=1)``,
``Token()``, ``Generalise("district")``, ``Band(width=1000)``, ``Round(to=100)``,
``Fake("id_no")``. ``apply(values, context)`` takes a whole Arrow array (or chunked array,
or pandas Series) and returns a ``pa.Array``; no Python runs per row. Keyed operators
(token, fake) compute their digest once per distinct value and map back with ``take``.

Every operator names the field types it can apply to (``applies_to``); the catalog keeps
the same table in ``catalog/masking_overrides.py`` to reject overrides at load time, and a
test keeps the two equal. NULL stays NULL everywhere; an empty string stays empty.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.errors import MaskingKeyError
from catalog.identifiers import (
    JIANGMEN_DIVISIONS,
    is_valid_resident_id,
    make_resident_ids,
    upgrade_resident_id15,
)
from masking.keys import DerivedKey

Values = pa.Array | pa.ChunkedArray | pd.Series

_ALL_TYPES = frozenset({"string", "date", "datetime", "integer", "decimal"})
_DATES = frozenset({"date", "datetime"})
_AMOUNTS = frozenset({"integer", "decimal"})


@dataclass(frozen=True)
class Context:
    """What keyed or dated operators need besides the values.

    ``key``: the consumer's derived key (purpose ``token`` for Token, ``fake`` for Fake).
    ``reference_date``: the date ages are counted to (the partition date, for repeatability).
    """

    key: DerivedKey | None = None
    reference_date: dt.date | None = None


NO_CONTEXT = Context()


class Operator:
    """Base: an operator reads like a row of the design's table."""

    op: ClassVar[str]
    applies_to: ClassVar[frozenset[str]] = _ALL_TYPES
    example: ClassVar[Any] = "张小明"

    @property
    def variant(self) -> str:
        """The registry name (``mask``, ``generalise.year``); see catalog/masking_overrides."""
        return self.op

    def field_types(self) -> frozenset[str]:
        return self.applies_to

    def can_apply(self, field_type: str) -> bool:
        return field_type in self.field_types()

    def spec(self) -> dict[str, Any]:
        """Operator and parameters, for Parquet metadata and the catalog (no key material)."""
        params = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return {"op": self.op, **params}

    def label(self) -> str:
        """``mask(keep_first=1)``: the parameters that differ from their defaults."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        shown = {k: v for k, v in self.spec().items() if k != "op" and v != defaults.get(k)}
        if "to" in self.spec():
            shown = {"to": self.spec()["to"], **shown}
        return f"{self.op}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def describe(self, example: Any = None) -> str:
        """Short text for people: ``mask(keep_first=1) → 张**``."""
        example = self.example if example is None else example
        try:
            shown = self.apply(pa.array([example]), _EXAMPLE_CONTEXT)[0].as_py()
        except (MaskingKeyError, pa.ArrowException, TypeError, ValueError):
            return self.label()
        return f"{self.label()} → {shown}"

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        raise NotImplementedError


# -- helpers -------------------------------------------------------------------------------


def as_array(values: Values) -> pa.Array:
    """One contiguous Arrow array from an array, chunked array or pandas Series."""
    if isinstance(values, pd.Series):
        values = pa.array(values, from_pandas=True)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.string())
    return values


def _strings(values: Values, op: str) -> pa.Array:
    arr = as_array(values)
    if pa.types.is_null(arr.type):
        return arr.cast(pa.string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise TypeError(f"{op} applies to string columns, not {arr.type}")
    return arr


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Buffer | None]:
    """(offsets rebased to 0, data bytes, validity) of a string array, without copying data."""
    validity, offsets_buf, data_buf = arr.buffers()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None
        else np.zeros(0, dtype=np.uint8)
    )
    data = data[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    if validity is not None and arr.offset:  # realign the bitmap to the slice
        validity = pc.is_valid(arr).buffers()[1]
    return offsets, data, validity if arr.null_count else None


def _string_array(
    type_: pa.DataType, offsets: np.ndarray, data: np.ndarray, validity: pa.Buffer | None
) -> pa.Array:
    n = len(offsets) - 1
    width = np.int64 if pa.types.is_large_string(type_) else np.int32
    return pa.Array.from_buffers(
        type_,
        n,
        [validity, pa.py_buffer(offsets.astype(width, copy=False)), pa.py_buffer(data)],
    )


def _map_distinct(arr: pa.Array, fn: Any, out_type: pa.DataType) -> pa.Array:
    """Apply ``fn`` to the distinct values only and map back with ``take``.

    ``fn`` gets the dictionary (an Arrow array without nulls) and returns an array of the
    same length. Nulls stay null through the null indices.
    """
    encoded = pc.dictionary_encode(arr)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    if len(encoded.dictionary) == 0:
        return pa.nulls(len(arr), out_type)
    return fn(encoded.dictionary).take(encoded.indices)


def _digests(key: DerivedKey, label: bytes, dictionary: pa.Array) -> np.ndarray:
    """(n, 32) uint8 HMAC-SHA256 digests of ``label + value`` for each distinct value."""
    large = pa.types.is_large_string(dictionary.type)
    messages = dictionary.cast(pa.large_binary() if large else pa.binary()).to_pylist()
    if label:
        messages = [label + m for m in messages]
    return np.frombuffer(b"".join(key.hmac_sha256(messages)), dtype=np.uint8).reshape(-1, 32)


def _require_key(context: Context, purpose: str, op: str) -> DerivedKey:
    key = context.key
    if key is None:
        raise MaskingKeyError(f"{op} needs a derived masking key; none was given")
    if key.purpose != purpose:
        raise MaskingKeyError(f"{op} needs a {purpose} key, got a {key.purpose} key")
    return key


# -- keep and drop -------------------------------------------------------------------------


@dataclass(frozen=True)
class Keep(Operator):
    """The value in clear."""

    op: ClassVar[str] = "keep"

    def describe(self, example: Any = None) -> str:
        return "keep() → clear"

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        return as_array(values)


@dataclass(frozen=True)
class Drop(Operator):
    """No column at all. ``apply`` gives all nulls, for callers that must keep the shape."""

    op: ClassVar[str] = "drop"

    def describe(self, example: Any = None) -> str:
        return "drop() → no column"

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        arr = as_array(values)
        return pa.nulls(len(arr), arr.type)


# -- mask ----------------------------------------------------------------------------------

_LEAD_LENGTH = np.ones(256, dtype=np.int64)
_LEAD_LENGTH[0xC0:0xE0], _LEAD_LENGTH[0xE0:0xF0], _LEAD_LENGTH[0xF0:] = 2, 3, 4


@dataclass(frozen=True)
class Mask(Operator):
    """Keep the first and last characters, replace the rest by ``char``, one per character.

    Counted in characters, not bytes, so Chinese text masks correctly (张三 → 张*,
    欧阳娜娜 → 欧***). A value not longer than ``keep_first + keep_last`` would be shown
    whole, so it reveals at most half its characters instead (first ones before last
    ones): with ``keep_first=1, keep_last=1``, 张三 → 张*, 王 → *. The length in characters
    is kept.
    """

    keep_first: int = 0
    keep_last: int = 0
    char: str = "*"
    op: ClassVar[str] = "mask"
    applies_to: ClassVar[frozenset[str]] = frozenset({"string"})

    def __post_init__(self) -> None:
        if self.keep_first < 0 or self.keep_last < 0 or len(self.char) != 1:
            raise ValueError("mask needs keep_first, keep_last >= 0 and a single char")

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        arr = _strings(values, "mask")
        offsets, data, validity = _string_parts(arr)
        if len(arr) == 0:
            return arr
        byte_len = np.diff(offsets)
        ascii_only = not (data >= 0x80).any()
        char = self.char.encode("utf-8")
        width = int(byte_len[0])
        if ascii_only and len(char) == 1 and (byte_len == width).all():
            # fixed-width ASCII (ID numbers, mobiles): one slice of a (rows, width) view
            first, last = _revealed(np.array([width]), self.keep_first, self.keep_last)
            out = data.copy().reshape(len(arr), width)
            out[:, int(first[0]) : width - int(last[0])] = char[0]
            return _string_array(arr.type, offsets, out.reshape(-1), validity)
        if ascii_only:
            n_chars = byte_len
        else:
            n_chars = pc.utf8_length(arr).fill_null(0).to_numpy().astype(np.int64)
        first, last = _revealed(n_chars, self.keep_first, self.keep_last)
        hidden = n_chars - first - last
        starts = offsets[:-1].astype(np.int64)
        ends = offsets[1:].astype(np.int64)
        if ascii_only:
            hide_from, hide_to = starts + first, ends - last
        else:
            hide_from = _advance(data, starts, first)
            hide_to = _retreat(data, ends, last)
        rows = hidden > 0
        # +1 where a hidden stretch starts, -1 where it ends; the running sum marks its bytes
        delta = np.zeros(len(data) + 1, dtype=np.int8)
        delta[hide_from[rows]] += 1
        delta[hide_to[rows]] -= 1
        in_hidden = np.cumsum(delta[:-1], dtype=np.int8).view(bool)
        if ascii_only and len(char) == 1:  # same length: overwrite in place
            out = np.where(in_hidden, np.uint8(char[0]), data)
            return _string_array(arr.type, offsets, out, validity)
        # one mask char per hidden character: keep the lead byte of each, drop the rest
        is_lead = (data & 0xC0) != 0x80
        hidden_lead = in_hidden & is_lead
        keep = ~in_hidden | hidden_lead
        if len(char) == 1:
            out = np.where(hidden_lead, np.uint8(char[0]), data)[keep]
        else:  # a multi-byte mask char: repeat each kept byte by its output length
            repeat = np.where(hidden_lead, len(char), 1)[keep]
            source = data[keep]
            marks = hidden_lead[keep]
            out = np.repeat(source, repeat)
            pattern = np.frombuffer(char, dtype=np.uint8)
            out_marks = np.repeat(marks, repeat)
            out[out_marks] = np.tile(pattern, int(marks.sum()))
        new_len = byte_len - (hide_to - hide_from) * rows + hidden * len(char)
        new_offsets = np.zeros(len(arr) + 1, dtype=np.int64)
        np.cumsum(new_len, out=new_offsets[1:])
        return _string_array(arr.type, new_offsets, out, validity)


def _revealed(n: np.ndarray, keep_first: int, keep_last: int) -> tuple[np.ndarray, np.ndarray]:
    """Characters shown at the start and end; short values reveal at most half."""
    short = n <= keep_first + keep_last
    budget = n // 2
    first = np.where(short, np.minimum(keep_first, budget), keep_first)
    last = np.where(short, np.minimum(keep_last, budget - first), keep_last)
    return first.astype(np.int64), last.astype(np.int64)


def _advance(data: np.ndarray, pos: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Byte position ``steps`` UTF-8 characters after ``pos`` (per row)."""
    pos = pos.copy()
    padded = np.append(data, np.uint8(0))
    for step in range(int(steps.max(initial=0))):
        moving = steps > step
        pos[moving] += _LEAD_LENGTH[padded[pos[moving]]]
    return pos


def _retreat(data: np.ndarray, pos: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Byte position ``steps`` UTF-8 characters before ``pos`` (per row)."""
    pos = pos.copy()
    for step in range(int(steps.max(initial=0))):
        moving = np.flatnonzero(steps > step)
        pos[moving] -= 1
        for _ in range(3):  # step back over continuation bytes
            cont = moving[(data[pos[moving]] & 0xC0) == 0x80]
            pos[cont] -= 1
    return pos


# -- token ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token(Operator):
    """Keyed HMAC-SHA256 of the value, as ``length`` lowercase hex characters.

    The key is the consumer's derived key, so one consumer's tokens do not join with
    another's, while the same value gets the same token in every dataset of one consumer.
    The default 32 hex characters (128 bits) make collisions negligible at any city's
    scale. An empty string stays empty (a token for "no value" would be a false join).
    """

    length: int = 32
    op: ClassVar[str] = "token"
    applies_to: ClassVar[frozenset[str]] = frozenset({"string", "integer"})

    def __post_init__(self) -> None:
        if not 16 <= self.length <= 64 or self.length % 2:
            raise ValueError("token length must be an even number of hex digits, 16..64")

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        key = _require_key(context, "token", "token")
        arr = as_array(values)
        if pa.types.is_integer(arr.type):
            arr = arr.cast(pa.string())
        arr = _strings(arr, "token")
        nbytes = self.length // 2

        def tokens(dictionary: pa.Array) -> pa.Array:
            digests = _digests(key, b"", dictionary)[:, :nbytes]
            hexed = _HEX_PAIRS[digests].reshape(-1)  # two ASCII bytes per digest byte
            width = self.length
            offsets = np.arange(len(dictionary) + 1, dtype=np.int64) * width
            out = _string_array(pa.string(), offsets, hexed, None)
            empty = pc.equal(dictionary, "")
            return pc.if_else(empty, "", out) if pc.any(empty).as_py() else out

        return _map_distinct(arr, tokens, pa.string())


_HEX_PAIRS = np.frombuffer(
    "".join(f"{i:02x}" for i in range(256)).encode("ascii"), dtype=np.uint8
).reshape(256, 2)


# -- generalise ----------------------------------------------------------------------------

GeneraliseTo = Literal["year_month", "year", "age_band", "district", "district_code", "prefix"]
# names an address may use for each current district (新会市 is 新会区's name before 2002)
_DISTRICT_NAMES: list[tuple[str, str]] = [(name, code) for code, name in JIANGMEN_DIVISIONS.items()]
_DISTRICT_NAMES.append(("新会市", "440705"))


@dataclass(frozen=True)
class Generalise(Operator):
    """A coarser value: date → ``YYYY-MM`` or year; birth date → age band (``35-39``,
    top-coded ``90+``) at the context's reference date; address → Jiangmen district name
    or division code (NULL when no district is named); a code → its first ``length``
    characters (division 440703 → 4407)."""

    to: GeneraliseTo
    width: int = 5
    length: int = 4
    top: int = 90
    op: ClassVar[str] = "generalise"

    @property
    def variant(self) -> str:
        return f"generalise.{self.to}"

    def field_types(self) -> frozenset[str]:
        return _DATES if self.to in ("year_month", "year", "age_band") else frozenset({"string"})

    def spec(self) -> dict[str, Any]:
        extra = {
            "age_band": {"width": self.width, "top": self.top},
            "prefix": {"length": self.length},
        }
        return {"op": self.op, "to": self.to, **extra.get(self.to, {})}

    def describe(self, example: Any = None) -> str:
        if example is None:
            example = {
                "district": "江门市蓬江区建设路1号",
                "district_code": "江门市蓬江区建设路1号",
                "prefix": "440703",
            }.get(self.to, dt.date(1985, 6, 15))
        return super().describe(example)

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        arr = as_array(values)
        if self.to in ("district", "district_code"):
            return _district(_strings(arr, "generalise"), self.to == "district_code")
        if self.to == "prefix":
            return pc.utf8_slice_codeunits(_strings(arr, "generalise"), 0, self.length)
        if not (pa.types.is_date(arr.type) or pa.types.is_timestamp(arr.type)):
            raise TypeError(f"generalise to {self.to} applies to dates, not {arr.type}")
        days = arr.cast(pa.date32()).cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False)
        valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
        days = days.astype("datetime64[D]")
        mask = ~valid
        if self.to == "year":
            years = days.astype("datetime64[Y]").astype(np.int64) + 1970
            return pa.array(years.astype(np.int32), mask=mask)
        if self.to == "year_month":
            months = days.astype("datetime64[M]").astype(np.int64)
            return _labels(months, mask, lambda m: f"{1970 + m // 12:04d}-{m % 12 + 1:02d}")
        if context.reference_date is None:
            raise ValueError("generalise to age_band needs a reference date in the context")
        ref = np.datetime64(context.reference_date, "D")
        year, month_day = _year_month_day(days)
        ref_year, ref_month_day = _year_month_day(np.array([ref]))
        # one year less until this year's birthday (29 Feb counts from 1 March)
        age = ref_year[0] - year - (month_day > ref_month_day[0])
        band = np.minimum(np.maximum(age, 0) // self.width * self.width, self.top)
        top, w = self.top, self.width
        return _labels(band, mask, lambda b: f"{top}+" if b >= top else f"{b}-{b + w - 1}")


def _year_month_day(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(year, month * 100 + day) of datetime64[D] values."""
    months = days.astype("datetime64[M]")
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month * 100 + day


def _labels(codes: np.ndarray, mask: np.ndarray, label: Any) -> pa.Array:
    """String labels for integer codes: one Python call per distinct code, then ``take``."""
    if len(codes) == 0:
        return pa.array([], pa.string())
    low, high = int(codes.min()), int(codes.max())
    if high - low < 100_000:  # a narrow range (months, age bands): index it, no sort
        distinct, index = np.arange(low, high + 1), codes - low
    else:
        distinct, index = np.unique(codes, return_inverse=True)
    names = pa.array([label(int(c)) for c in distinct], pa.string())
    return names.take(pa.array(index.astype(np.int32), mask=mask))


def _district(arr: pa.Array, as_code: bool) -> pa.Array:
    """The district named earliest in each address, found once per distinct address.

    One regular expression of the names (RE2 finds the leftmost match, and at one place
    the name listed first: the earliest name, ties to the first listed) instead of one
    substring search per name: a third of the time over a million addresses."""
    names = [code if as_code else JIANGMEN_DIVISIONS[code] for _, code in _DISTRICT_NAMES]
    choices = pa.array([*names, None], pa.string())
    listed = pa.array([name for name, _ in _DISTRICT_NAMES], pa.string())
    pattern = "(?P<name>" + "|".join(re.escape(name) for name, _ in _DISTRICT_NAMES) + ")"

    def districts(dictionary: pa.Array) -> pa.Array:
        found = pc.extract_regex(dictionary, pattern).field("name")
        return choices.take(pc.fill_null(pc.index_in(found, value_set=listed), len(names)))

    return _map_distinct(arr, districts, pa.string())


# -- amounts -------------------------------------------------------------------------------


def _amounts(values: Values, op: str) -> pa.Array:
    arr = as_array(values)
    if not (
        pa.types.is_integer(arr.type)
        or pa.types.is_decimal(arr.type)
        or pa.types.is_floating(arr.type)
    ):
        raise TypeError(f"{op} applies to amounts (integer/decimal), not {arr.type}")
    return arr


@dataclass(frozen=True)
class Round(Operator):
    """Round to the nearest multiple of ``to`` (halves away from zero); the type is kept."""

    to: float
    op: ClassVar[str] = "round"
    applies_to: ClassVar[frozenset[str]] = _AMOUNTS
    example: ClassVar[Any] = 5678

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        arr = _amounts(values, "round")
        if pa.types.is_decimal(arr.type):
            import decimal

            multiple = pa.scalar(decimal.Decimal(str(self.to)), arr.type)
        elif pa.types.is_integer(arr.type):
            multiple = pa.scalar(int(self.to), arr.type)
        else:
            multiple = pa.scalar(float(self.to), arr.type)
        return pc.round_to_multiple(arr, multiple=multiple, round_mode="half_towards_infinity")


@dataclass(frozen=True)
class Band(Operator):
    """The band a value falls in, as a half-open label ``[3000, 4000)``."""

    width: float
    op: ClassVar[str] = "band"
    applies_to: ClassVar[frozenset[str]] = _AMOUNTS
    example: ClassVar[Any] = 5678

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        arr = _amounts(values, "band")
        numbers = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
        valid = ~np.isnan(numbers)
        lower = np.floor(np.where(valid, numbers, 0) / self.width).astype(np.int64)
        w = self.width

        def label(code: int) -> str:
            return f"[{_num(code * w)}, {_num((code + 1) * w)})"

        return _labels(lower, ~valid, label)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# -- fake ----------------------------------------------------------------------------------

_SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
_GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红建文辉力春兰海燕志宇鹏飞慧颖婷雪琳"
    "晨浩宁欣怡嘉俊佳欢梅晓斌凯东亮翔峰丹凤云龙波宏振国荣健彬雯倩瑶露晶博阳瑞昊泽轩梓涵诗睿"
)
_JIANGMEN_CODES = np.array(sorted(JIANGMEN_DIVISIONS), dtype="U6")


@dataclass(frozen=True)
class Fake(Operator):
    """A consistent fake value for test copies: the same input and key, the same fake.

    ``id_no``: a resident ID that passes the check character, with a real birth date and
    the right sex digit. It keeps the original's birth date and sex (so the row's birth
    date and sex columns still agree with it) and replaces division and sequence by a
    keyed permutation, so two different valid IDs never get the same fake. Values that are
    not valid IDs get a hash-derived fake (which may, rarely, collide). Not
    de-identification: use Token or Mask for anything that leaves the platform team.
    ``phone``: a mobile number with the same 3-digit prefix, the last 8 digits permuted by
    key (never the original). ``name``: a plausible Chinese name of 2 or 3 characters, as
    long as the original (a 1-character name gets 2, a 4-character one 3).
    """

    kind: Literal["id_no", "name", "phone"]
    op: ClassVar[str] = "fake"
    applies_to: ClassVar[frozenset[str]] = frozenset({"string"})

    @property
    def variant(self) -> str:
        return f"fake.{self.kind}"

    def describe(self, example: Any = None) -> str:
        return self.label()

    def apply(self, values: Values, context: Context = NO_CONTEXT) -> pa.Array:
        key = _require_key(context, "fake", "fake")
        arr = _strings(values, "fake")
        fn = {"id_no": _fake_ids, "name": _fake_names, "phone": _fake_phones}[self.kind]

        def fakes(dictionary: pa.Array) -> pa.Array:
            out = fn(key, dictionary)
            empty = pc.equal(dictionary, "")
            return pc.if_else(empty, "", out) if pc.any(empty).as_py() else out

        return _map_distinct(arr, fakes, pa.string())


def _pick(digests: np.ndarray, at: int, n: int) -> np.ndarray:
    """A number in ``[0, n)`` from 8 digest bytes at ``at`` (as int64, for safe arithmetic)."""
    word = digests[:, at : at + 8].copy().view("<u8").reshape(-1)
    return (word % np.uint64(n)).astype(np.int64)


def _coprime_to(n: int) -> np.ndarray:
    return np.array([a for a in range(1, n) if np.gcd(a, n) == 1], dtype=np.int64)


_UNITS_3500, _UNITS_500 = _coprime_to(3500), _coprime_to(500)


_ANY_NIGHT = dt.date(2200, 1, 1)


def _fake_ids(key: DerivedKey, dictionary: pa.Array) -> pa.Array:
    values = pc.utf8_upper(dictionary)
    text = values.to_numpy(zero_copy_only=False).astype(object)
    id15 = pc.match_substring_regex(values, r"^\d{15}$").to_numpy(zero_copy_only=False)
    if id15.any():
        text[id15] = upgrade_resident_id15(text[id15].astype("U15"))
    valid = is_valid_resident_id(text, born_by=_ANY_NIGHT)  # the shape decides, not the night
    out = np.empty(len(text), dtype="U18")
    if valid.any():
        out[valid] = _permuted_ids(key, text[valid].astype("U18"))
    if (~valid).any():
        digests = _digests(key, b"id-any|", dictionary.filter(pa.array(~valid)))
        birth = np.datetime64("1940-01-01") + _pick(digests, 0, 27000).astype("timedelta64[D]")
        year, month_day = _year_month_day(birth)
        division = _JIANGMEN_CODES[_pick(digests, 8, len(_JIANGMEN_CODES))].astype(np.int64)
        out[~valid] = make_resident_ids(
            division, year * 10000 + month_day, _pick(digests, 16, 1000)
        )
    return pa.array(out, pa.string())


def _permuted_ids(key: DerivedKey, ids: np.ndarray) -> np.ndarray:
    """Fake IDs that keep birth date and sex, with division and sequence permuted by key.

    Within each (birth date, sex) group, Jiangmen IDs map through an affine permutation of
    the 7 divisions x 500 same-sex sequence numbers; other IDs keep their division and
    permute the sequence only. A bijection without fixed points: distinct IDs stay distinct
    and no one keeps their own ID (a fake may still equal another resident's real ID).
    """
    digits = np.frombuffer(ids.astype("S18").tobytes(), dtype=np.uint8).reshape(-1, 18)
    digits = digits[:, :17].astype(np.int64) - 48
    division = digits[:, :6] @ (10 ** np.arange(5, -1, -1))
    birth8 = digits[:, 6:14] @ (10 ** np.arange(7, -1, -1))
    seq = digits[:, 14:17] @ np.array([100, 10, 1])
    sex = seq % 2
    groups, inverse = np.unique(birth8 * 2 + sex, return_inverse=True)
    digests = _digests(key, b"id-perm|", pa.array(groups.astype(str)))
    a_jm = _UNITS_3500[_pick(digests, 0, len(_UNITS_3500))][inverse]
    # an odd shift: a - 1 is even, so a*x + b = x has no solution and nobody keeps their ID
    b_jm = (_pick(digests, 8, 1750) * 2 + 1)[inverse]
    a_other = _UNITS_500[_pick(digests, 16, len(_UNITS_500))][inverse]
    b_other = (_pick(digests, 24, 250) * 2 + 1)[inverse]
    jm_codes = _JIANGMEN_CODES.astype(np.int64)
    jm_index = np.searchsorted(jm_codes, division)  # codes are sorted
    in_jm = jm_codes[np.minimum(jm_index, len(jm_codes) - 1)] == division
    half = seq // 2
    y_jm = (a_jm * (jm_index * 500 + half) + b_jm) % 3500
    y_other = (a_other * half + b_other) % 500
    new_division = np.where(in_jm, jm_codes[np.minimum(y_jm // 500, 6)], division)
    new_half = np.where(in_jm, y_jm % 500, y_other)
    return make_resident_ids(new_division, birth8, new_half * 2 + sex)


def _fake_names(key: DerivedKey, dictionary: pa.Array) -> pa.Array:
    digests = _digests(key, b"name|", dictionary)
    length = pc.utf8_length(dictionary).to_numpy(zero_copy_only=False)
    surnames, given = np.array(_SURNAMES), np.array(_GIVEN)
    name = np.char.add(
        surnames[_pick(digests, 0, len(surnames))], given[_pick(digests, 8, len(given))]
    )
    name = np.char.add(name, np.where(length >= 3, given[_pick(digests, 16, len(given))], ""))
    return pa.array(name, pa.string())


def _fake_phones(key: DerivedKey, dictionary: pa.Array) -> pa.Array:
    mobile = pc.match_substring_regex(dictionary, r"^1[3-9]\d{9}$").to_numpy(zero_copy_only=False)
    out = np.empty(len(dictionary), dtype="U11")
    if mobile.any():
        text = dictionary.filter(pa.array(mobile)).to_numpy(zero_copy_only=False).astype("S11")
        digits = np.frombuffer(text.tobytes(), dtype=np.uint8).reshape(-1, 11).astype(np.int64)
        digits -= 48
        prefix = digits[:, :3] @ np.array([100, 10, 1])
        rest = digits[:, 3:] @ (10 ** np.arange(7, -1, -1))
        prefixes, inverse = np.unique(prefix, return_inverse=True)
        digests = _digests(key, b"phone-perm|", pa.array(prefixes.astype(str)))
        # a multiplier coprime to 10^8 (odd, not a multiple of 5) makes a bijection
        a = _pick(digests, 0, 10**8 // 10) * 10 + np.array([1, 3, 7, 9])[_pick(digests, 8, 4)]
        b = _pick(digests, 16, 10**8 // 2) * 2 + 1  # odd: no number maps to itself
        permuted = (a[inverse] * rest + b[inverse]) % 10**8  # < 10^16: fits int64
        out[mobile] = np.char.add(prefix.astype("U3"), np.char.zfill(permuted.astype("U8"), 8))
    if (~mobile).any():
        digests = _digests(key, b"phone-any|", dictionary.filter(pa.array(~mobile)))
        second = (3 + _pick(digests, 0, 7)).astype("U1")
        tail = np.char.zfill(_pick(digests, 8, 10**9).astype("U9"), 9)
        out[~mobile] = np.char.add(np.char.add("1", second), tail)
    return pa.array(out, pa.string())


# the operator variants the library offers, one instance each (tied to the catalog registry)
OPERATOR_VARIANTS: tuple[Any, ...] = (
    Keep(),
    Drop(),
    Mask(),
    Token(),
    *(
        Generalise(to)
        for to in ("year_month", "year", "age_band", "district", "district_code", "prefix")
    ),
    Band(width=1000),
    Round(to=100),
    *(Fake(kind) for kind in ("id_no", "name", "phone")),
)

_EXAMPLE_CONTEXT = Context(reference_date=dt.date(2025, 1, 1))
