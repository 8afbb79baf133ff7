"""The knobs: how dirty each department's data is, and how much changes per day."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class DirtRates:
    """Share of eligible rows that get each kind of dirt (docs/architecture.md §3).

    "Eligible" means rows where the dirt can exist at all: ``id15`` only for IDs of
    people born 1900-1999, ``lower_x`` only for IDs ending in X, ``traditional`` only for
    names with a character that has a traditional form, ``no_id`` only in systems that
    accept records without an ID (人社, 卫计, 行政服务中心) and so on. The kind names
    below are exactly the labels written to the ground truth ``dirt`` column.
    """

    duplicate: float = 0.02  # second row for the same person/firm: new key, other updated_at
    id15: float = 0.015  # resident ID still in its old 15-digit form (born 19xx only)
    lower_x: float = 0.5  # check char X written as lowercase x
    fullwidth: float = 0.01  # identifier typed with full-width digits/letters (１２３Ｘ)
    spaces: float = 0.02  # stray leading/trailing/inner space in the identifier
    zero_width: float = 0.005  # U+200B / U+FEFF inside the identifier (not in GBK files)
    traditional: float = 0.01  # name in traditional characters (陳/陈, 黃/黄)
    name_space: float = 0.005  # a space inside the name (陈 伟明)
    homophone: float = 0.005  # a given-name character replaced by a homophone (伟 -> 玮)
    no_id: float = 0.01  # no ID at all: name + birth date + phone only
    # what people tell a counter that does not check an ID card (ID-less rows only)
    birth_typo: float = 0.06  # one digit of the birth date mistyped
    birth_swapped: float = 0.03  # day and month swapped (2017-02-23 → 2017-23-02 read as 02/23)
    phone_changed: float = 0.15  # a different (newer or older) phone number
    phone_typo: float = 0.04  # one digit of the phone mistyped
    name_truncated: float = 0.03  # last character of a three-character name dropped
    bad_check: float = 0.003  # resident ID with a wrong check character (a typo)
    date_format: float = 0.15  # dates as 2017/2/23, 20170223 or 2017年2月23日 instead of ISO
    phone_format: float = 0.10  # phone as +86 138-1234-5678, 138 1234 5678 or 86-13812345678
    # 有限公司<->有限责任公司, （）<->(), 江门市 or the district dropped or added, a traditional
    # character, trailing spaces: spellings a register normalisation can undo
    ent_name_variant: float = 0.10
    ent_name_typo: float = 0.01  # one character of the trade name (字号) keyed wrong
    ent_address_variant: float = 0.10  # 广东省/江门市 dropped, 號 for 号, full-width digits
    stale_org_code: float = 0.03  # a legacy record under the org code issued before the USCC
    legacy_tax_no: float = 0.7  # pre-2015 firm still filed under its 15-char tax number
    org_code_no_hyphen: float = 0.1  # organisation code written without its hyphen

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> DirtRates:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def scaled(self, factor: float, **overrides: float) -> DirtRates:
        """All rates multiplied by ``factor`` (capped at 1), then ``overrides`` applied."""
        data = {k: min(1.0, v * factor) for k, v in self.as_dict().items()}
        return DirtRates(**(data | overrides))


@dataclass(frozen=True)
class DailyRates:
    """Share of each dataset's rows changed by one :func:`advance_day`."""

    update: float = 0.005
    insert: float = 0.002
    delete: float = 0.001  # status flag in SQL systems, hard delete in snapshot files

    def as_dict(self) -> dict[str, float]:
        return asdict(self)
