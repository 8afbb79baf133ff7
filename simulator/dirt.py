"""Dirt: the imperfections real department data has, applied to random subsets of a batch.

Each kind draws one random mask over the whole batch and rewrites only the chosen rows
with pandas string methods, so the cost is proportional to the (small) dirty share. Every
row's dirt is recorded for the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from catalog.identifiers import downgrade_resident_id18
from simulator import vocab
from simulator.rates import DirtRates

_ASCII_ALNUM = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FULLWIDTH = {c: c + 0xFEE0 for c in _ASCII_ALNUM}
TRADITIONAL_TABLE = str.maketrans(vocab.TRADITIONAL)
ZERO_WIDTH = np.array(["\u200b", "\ufeff"])
_CHECK_CHARS = np.array(list("10X98765432"))
_TRADITIONAL_CHARS = "[" + "".join(vocab.TRADITIONAL) + "]"
_HOMOPHONE_CHARS = "[" + "".join(vocab.HOMOPHONES) + "]"


@dataclass(frozen=True)
class DirtTargets:
    """Which columns of a dataset each kind of dirt may touch."""

    person_id: str | None = None  # resident-ID column (id15, lower_x, bad_check, no_id)
    no_id: bool = False  # the system accepts records with no ID at all
    code: str | None = None  # main identifier (fullwidth, spaces, zero_width)
    person_name: str | None = None
    ent_name: str | None = None
    ent_address: str | None = None  # an enterprise's address (province/city prefix, 號, digits)
    phone: str | None = None
    dates: tuple[str, ...] = ()
    zero_width: bool = True  # False for GBK files: GBK cannot encode U+200B/U+FEFF
    person_rows: str | None = None  # column whose value 自然人 marks person rows (行政服务中心)
    birth_date: str | None = None  # birth-date column (ID-less rows get typos and swaps)
    extra: dict[str, str] = field(default_factory=dict)


def apply_dirt(
    df: pd.DataFrame, targets: DirtTargets, rates: DirtRates, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Dirty ``df`` in place; return one boolean mask per dirt kind applied."""
    n = len(df)
    tags: dict[str, np.ndarray] = {}
    person = np.ones(n, dtype=bool)
    if targets.person_rows:
        person = (df[targets.person_rows] == "自然人").to_numpy()
    if targets.person_id:
        _resident_id_dirt(df, targets, rates, rng, person, tags)
    if targets.code:
        _code_dirt(df, targets, rates, rng, tags)
    if targets.person_name:
        _name_dirt(df, targets.person_name, rates, rng, person, tags)
    if "no_id" in tags and tags["no_id"].any():
        _no_id_dirt(df, targets, rates, rng, tags["no_id"], tags)
    if targets.ent_name:
        has = (
            notna(df, targets.ent_name) & ~person
            if targets.person_rows
            else notna(df, targets.ent_name)
        )
        tags["ent_name_typo"] = _ent_name_typo(
            df, targets.ent_name, has & (rng.random(n) < rates.ent_name_typo), rng
        )
        tags["ent_name_variant"] = _ent_name_variant(
            df, targets.ent_name, has & (rng.random(n) < rates.ent_name_variant), rng
        )
    if targets.ent_address:
        has = notna(df, targets.ent_address)
        tags["ent_address_variant"] = _ent_address_variant(
            df, targets.ent_address, has & (rng.random(n) < rates.ent_address_variant), rng
        )
    if targets.phone:
        tags["phone_format"] = _phone_format(
            df, targets.phone, notna(df, targets.phone) & (rng.random(n) < rates.phone_format), rng
        )
    if targets.dates:
        chosen = rng.random(n) < rates.date_format
        tags["date_format"] = _date_format(df, targets.dates, chosen, rng)
    return tags


def notna(df: pd.DataFrame, column: str) -> np.ndarray:
    return df[column].notna().to_numpy()


def _set(df: pd.DataFrame, column: str, mask: np.ndarray, values: pd.Series | np.ndarray) -> None:
    if mask.any():
        df.loc[mask, column] = values


def _resident_id_dirt(
    df: pd.DataFrame,
    t: DirtTargets,
    rates: DirtRates,
    rng: np.random.Generator,
    person: np.ndarray,
    tags: dict[str, np.ndarray],
) -> None:
    col = t.person_id
    n = len(df)
    has = notna(df, col) & person
    if t.no_id:
        tags["no_id"] = has & (rng.random(n) < rates.no_id)
        _set(df, col, tags["no_id"], None)
        has &= ~tags["no_id"]
    ids = df[col]
    born_1900s = has & (ids.str.slice(6, 8) == "19").fillna(False).to_numpy()
    tags["id15"] = born_1900s & (rng.random(n) < rates.id15)
    _set(df, col, tags["id15"], downgrade_resident_id18(ids[tags["id15"]].to_numpy(dtype="U18")))
    full = has & ~tags["id15"]
    tags["bad_check"] = full & (rng.random(n) < rates.bad_check)
    if tags["bad_check"].any():
        chosen = df.loc[tags["bad_check"], col].to_numpy(dtype="U18")
        last = np.strings.slice(chosen, 17, 18)
        index = np.argmax(_CHECK_CHARS[None, :] == last[:, None], axis=1)
        wrong = _CHECK_CHARS[(index + rng.integers(1, 11, len(chosen))) % 11]
        df.loc[tags["bad_check"], col] = np.strings.add(np.strings.slice(chosen, 0, 17), wrong)
    ends_x = has & (df[col].str.endswith("X").fillna(False).to_numpy())
    tags["lower_x"] = ends_x & (rng.random(n) < rates.lower_x)
    _set(df, col, tags["lower_x"], df.loc[tags["lower_x"], col].str.lower())


def _no_id_dirt(
    df: pd.DataFrame,
    t: DirtTargets,
    rates: DirtRates,
    rng: np.random.Generator,
    no_id: np.ndarray,
    tags: dict[str, np.ndarray],
) -> None:
    """Rows given without an ID card: what a person says is less exact than what is checked."""
    n = len(df)
    if t.birth_date:
        has = no_id & notna(df, t.birth_date)
        tags["birth_typo"] = has & (rng.random(n) < rates.birth_typo)
        if tags["birth_typo"].any():
            d = df.loc[tags["birth_typo"], t.birth_date].to_numpy(dtype="U10")
            digits = np.strings.replace(d, "-", "")
            pos = rng.choice([3, 5, 7], len(d))  # last digit of year, month or day
            chars = digits.view("U1").reshape(len(d), 8).copy()
            rows = np.arange(len(d))
            old = chars[rows, pos].astype(int)
            chars[rows, pos] = ((old + rng.integers(1, 3, len(d))) % 10).astype(str)
            typed = np.array(["".join(r) for r in chars])  # dirty rows only
            iso = np.strings.add(
                np.strings.add(np.strings.add(np.strings.slice(typed, 0, 4), "-"),
                               np.strings.add(np.strings.slice(typed, 4, 6), "-")),
                np.strings.slice(typed, 6, 8),
            )  # fmt: skip
            ok = pd.to_datetime(pd.Series(iso), format="%Y-%m-%d", errors="coerce").notna()
            iso = np.where(ok.to_numpy(), iso, d)  # an impossible date stays correct
            df.loc[tags["birth_typo"], t.birth_date] = iso
            tags["birth_typo"][np.flatnonzero(tags["birth_typo"])[~ok.to_numpy()]] = False
        d_all = df[t.birth_date].astype("str")
        day = d_all.str.slice(8, 10)
        swappable = has & (pd.to_numeric(day, errors="coerce") <= 12).fillna(False).to_numpy()
        swappable &= (d_all.str.slice(5, 7) != day).fillna(False).to_numpy()
        tags["birth_swapped"] = swappable & (rng.random(n) < rates.birth_swapped)
        if tags["birth_swapped"].any():
            d = df.loc[tags["birth_swapped"], t.birth_date]
            df.loc[tags["birth_swapped"], t.birth_date] = (
                d.str.slice(0, 5) + d.str.slice(8, 10) + "-" + d.str.slice(5, 7)
            )
    if t.phone:
        has = no_id & notna(df, t.phone)
        tags["phone_changed"] = has & (rng.random(n) < rates.phone_changed)
        k = int(tags["phone_changed"].sum())
        if k:
            prefix = rng.choice(vocab.MOBILE_PREFIXES, k).astype(np.int64)
            df.loc[tags["phone_changed"], t.phone] = (
                prefix * 10**8 + rng.integers(0, 10**8, k)
            ).astype(str)
        tags["phone_typo"] = has & ~tags["phone_changed"] & (rng.random(n) < rates.phone_typo)
        if tags["phone_typo"].any():
            p = df.loc[tags["phone_typo"], t.phone].astype("str")
            pos = rng.integers(3, 11, len(p))
            digit = pd.Series(rng.integers(0, 10, len(p)).astype(str), index=p.index)
            same = pd.Series([s[i] for s, i in zip(p, pos, strict=True)], index=p.index)
            digit = digit.where(digit != same, ((same.astype(int) + 1) % 10).astype(str))
            out = [s[:i] + c + s[i + 1 :] for s, i, c in zip(p, pos, digit, strict=True)]
            df.loc[tags["phone_typo"], t.phone] = out
    if t.person_name:
        three = (df[t.person_name].str.len() == 3).fillna(False).to_numpy()
        tags["name_truncated"] = no_id & three & (rng.random(n) < rates.name_truncated)
        if tags["name_truncated"].any():
            names = df.loc[tags["name_truncated"], t.person_name]
            df.loc[tags["name_truncated"], t.person_name] = names.str.slice(0, 2)


def _code_dirt(
    df: pd.DataFrame,
    t: DirtTargets,
    rates: DirtRates,
    rng: np.random.Generator,
    tags: dict[str, np.ndarray],
) -> None:
    col = t.code
    n = len(df)
    has = notna(df, col)
    tags["fullwidth"] = has & (rng.random(n) < rates.fullwidth)
    _set(df, col, tags["fullwidth"], df.loc[tags["fullwidth"], col].str.translate(FULLWIDTH))
    tags["spaces"] = has & (rng.random(n) < rates.spaces)
    if tags["spaces"].any():
        values = df.loc[tags["spaces"], col]
        where = rng.integers(0, 3, len(values))
        inner = values.str.slice(0, 6) + " " + values.str.slice(6)  # typed in groups
        out = np.where(where == 0, " " + values, np.where(where == 1, values + "  ", inner))
        df.loc[tags["spaces"], col] = out
    if t.zero_width:
        tags["zero_width"] = has & (rng.random(n) < rates.zero_width)
        if tags["zero_width"].any():
            values = df.loc[tags["zero_width"], col]
            mark = ZERO_WIDTH[rng.integers(0, 2, len(values))]
            start = rng.random(len(values)) < 0.5
            df.loc[tags["zero_width"], col] = np.where(start, mark + values, values + mark)


def _name_dirt(
    df: pd.DataFrame,
    col: str,
    rates: DirtRates,
    rng: np.random.Generator,
    person: np.ndarray,
    tags: dict[str, np.ndarray],
) -> None:
    n = len(df)
    has = notna(df, col) & person
    given = df[col].str.slice(1)
    can_homophone = has & given.str.contains(_HOMOPHONE_CHARS).fillna(False).to_numpy()
    tags["homophone"] = can_homophone & (rng.random(n) < rates.homophone)
    if tags["homophone"].any():
        names = df.loc[tags["homophone"], col]
        table = str.maketrans(vocab.HOMOPHONES)
        given = names.str.slice(1).str.translate(table)
        df.loc[tags["homophone"], col] = names.str.slice(0, 1) + given
    can_trad = has & df[col].str.contains(_TRADITIONAL_CHARS).fillna(False).to_numpy()
    tags["traditional"] = can_trad & (rng.random(n) < rates.traditional)
    chosen = df.loc[tags["traditional"], col]
    _set(df, col, tags["traditional"], chosen.str.translate(TRADITIONAL_TABLE))
    tags["name_space"] = has & (rng.random(n) < rates.name_space)
    if tags["name_space"].any():
        names = df.loc[tags["name_space"], col]
        df.loc[tags["name_space"], col] = names.str.slice(0, 1) + " " + names.str.slice(1)


_DISTRICT_PREFIX = "^(?:江门市)?(?:" + "|".join(vocab.DISTRICT_NAMES) + ")"  # a district
_NAME_PREFIX = _DISTRICT_PREFIX + "?"  # 江门市, a district, both or neither


def _ent_name_variant(
    df: pd.DataFrame, col: str, mask: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One plausible re-spelling of each chosen firm name, of a kind its name allows.

    有限公司 ↔ 有限责任公司, （江门） → (江门), 江门市 dropped or added, the district dropped,
    one character in traditional form, trailing spaces: what registers really differ in.
    """
    if not mask.any():
        return mask
    names = df.loc[mask, col].astype(str)
    llc = names.str.endswith("有限公司") & ~names.str.endswith("股份有限公司")
    kinds = {  # variant → (rows it applies to, the re-spelt names)
        "form": (
            llc | names.str.endswith("有限责任公司"),
            names.str.replace("有限责任公司$", "有限公司", regex=True).where(
                ~llc, names.str.slice(0, -4) + "有限责任公司"
            ),
        ),
        "brackets": (names.str.contains("（", regex=False), names.str.translate(_HALF_BRACKETS)),
        "city_dropped": (names.str.startswith("江门市"), names.str.slice(3)),
        "city_added": (~names.str.startswith("江门市"), "江门市" + names),
        "district_dropped": (
            names.str.contains(_DISTRICT_PREFIX + ".{4}", regex=True),
            names.str.replace(_DISTRICT_PREFIX, "", regex=True).where(
                ~names.str.startswith("江门市"),
                "江门市" + names.str.replace(_DISTRICT_PREFIX, "", regex=True),
            ),
        ),
        "traditional": (
            names.str.contains(_TRADITIONAL_CHARS, regex=True),
            names.str.translate(TRADITIONAL_TABLE),
        ),
        "spaces": (pd.Series(True, index=names.index), names + "  "),
    }
    allowed = np.column_stack([ok.to_numpy(dtype=bool) for ok, _ in kinds.values()])
    pick = np.argmax(rng.random(allowed.shape) * allowed, axis=1)
    out = names.copy()
    for i, (_, respelt) in enumerate(kinds.values()):
        chosen = (pick == i) & allowed[:, i]
        out[chosen] = respelt[chosen]
    df.loc[mask, col] = out
    result = mask.copy()
    result[np.flatnonzero(mask)[(out == names).to_numpy()]] = False
    return result


_HALF_BRACKETS = str.maketrans("（）", "()")


def _ent_name_typo(
    df: pd.DataFrame, col: str, mask: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One character of the trade name (the two after the city/district prefix) keyed wrong."""
    if not mask.any():
        return mask
    names = df.loc[mask, col].astype(str)
    start = names.str.extract(f"({_NAME_PREFIX})", expand=False).fillna("").str.len()
    pos = start.to_numpy() + rng.integers(0, 2, len(names))
    chars = vocab.TRADE_NAME_CHARS
    wrong = chars[rng.integers(0, len(chars), len(names))]
    out = [  # only the chosen rows (about 1 %): a Python loop over them is cheap
        n[:i] + (w if n[i : i + 1] != w else chars[0] if w != chars[0] else chars[1]) + n[i + 1 :]
        for n, i, w in zip(names, pos, wrong, strict=True)
    ]
    df.loc[mask, col] = out
    return mask


_FULLWIDTH_DIGITS = str.maketrans({str(d): chr(0xFF10 + d) for d in range(10)})


def _ent_address_variant(
    df: pd.DataFrame, col: str, mask: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """An address as another register writes it: 广东省 or 广东省江门市 dropped, 號, ０-９."""
    if not mask.any():
        return mask
    addr = df.loc[mask, col].astype(str)
    province = addr.str.startswith("广东省江门市")
    kinds = [
        (province, addr.str.slice(3)),
        (province, addr.str.slice(6)),
        (addr.str.contains("号", regex=False), addr.str.replace("号", "號", regex=False)),
        (addr.str.contains("[0-9]", regex=True), addr.str.translate(_FULLWIDTH_DIGITS)),
    ]
    allowed = np.column_stack([ok.to_numpy(dtype=bool) for ok, _ in kinds])
    pick = np.argmax(rng.random(allowed.shape) * allowed, axis=1)
    out = addr.copy()
    for i, (_, respelt) in enumerate(kinds):
        chosen = (pick == i) & allowed[:, i]
        out[chosen] = respelt[chosen]
    df.loc[mask, col] = out
    result = mask.copy()
    result[np.flatnonzero(mask)[(out == addr).to_numpy()]] = False
    return result


def _phone_format(
    df: pd.DataFrame, col: str, mask: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    if not mask.any():
        return mask
    p = df.loc[mask, col]
    a, b, c = p.str.slice(0, 3), p.str.slice(3, 7), p.str.slice(7, 11)
    style = rng.integers(0, 3, len(p))
    out = np.where(
        style == 0,
        "+86 " + a + "-" + b + "-" + c,
        np.where(style == 1, a + " " + b + " " + c, "86-" + p),
    )
    df.loc[mask, col] = out
    return mask


def _date_format(
    df: pd.DataFrame, columns: tuple[str, ...], mask: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Rewrite the ISO dates of the chosen rows in one of three legacy styles (per row)."""
    style = rng.integers(0, 3, len(df))
    touched = np.zeros(len(df), dtype=bool)
    for col in columns:
        rows = mask & notna(df, col)
        if not rows.any():
            continue
        d = df.loc[rows, col]
        y, m, dd = d.str.slice(0, 4), d.str.slice(5, 7), d.str.slice(8, 10)
        m1, d1 = m.str.lstrip("0"), dd.str.lstrip("0")
        s = style[rows]
        out = np.where(
            s == 0,
            y + "/" + m1 + "/" + d1,
            np.where(s == 1, y + m + dd, y + "年" + m1 + "月" + d1 + "日"),
        )
        df.loc[rows, col] = out
        touched |= rows
    return touched


def labels(tags: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Semicolon-separated dirt kinds per row ('' for clean rows)."""
    out = np.full(n, "", dtype=object)
    for kind, mask in tags.items():
        if mask is None or not mask.any():
            continue
        chosen = out[mask]
        out[mask] = np.where(chosen == "", kind, chosen + ";" + kind)
    return out
