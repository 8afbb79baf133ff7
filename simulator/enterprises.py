"""The true set of enterprises and individual businesses, with their codes and owners.

Names are composed as [江门市 | district] + 2-character 字号 + industry + legal form, and
made unique (a registrar never registers the same name twice). Codes follow docs/architecture.md §4:
firms set up before 2015-10-01 (多证合一) carry a 15-digit registration number and an old
numeric organisation code; later ones only a USCC whose org-code part starts with ``MA``.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from catalog.identifiers import USCC_ALPHABET, make_business_reg_nos, make_org_codes, make_usccs
from simulator import vocab
from simulator.fmt import day_number

REFORM_DAY = day_number(date(2015, 10, 1))  # 多证合一: USCC for every new registration
STATUSES = np.array(["存续", "注销", "吊销"])
_USCC_CHARS = np.array(list(USCC_ALPHABET))
CITY_PREFIX = np.array(
    ["江门市蓬江区", "江门市江海区", "江门市新会区", "台山市", "开平市", "鹤山市", "恩平市"]
)
_SHOP_PREFIX = np.array(["蓬江区", "江海区", "新会区", "台山市", "开平市", "鹤山市", "恩平市"])


def draw_enterprises(
    n: int,
    rng: np.random.Generator,
    as_of: date,
    owners: np.ndarray,
    *,
    taken: pd.DataFrame | None = None,
    established_today: bool = False,
) -> pd.DataFrame:
    """``n`` enterprises; ``owners`` are person row numbers eligible as legal representative.

    ``taken`` is the existing enterprise table (new firms must not reuse its names or
    codes); ``established_today`` is for firms registered on ``as_of`` by the daily step.
    """
    today = day_number(as_of)
    ent_type = rng.choice(len(vocab.ENT_TYPES), n, p=vocab.normalised(vocab.ENT_TYPE_WEIGHTS))
    individual = ent_type == vocab.ENT_INDIVIDUAL
    district = rng.choice(len(vocab.DISTRICT_CODES), n, p=vocab.normalised(vocab.DISTRICT_WEIGHTS))
    if established_today:
        established = np.full(n, today, dtype=np.int64)
    else:
        reform = min(REFORM_DAY, today)
        old_start = day_number(date(1985, 1, 1))
        recent = rng.random(n) < 0.30
        # older firms: density rising towards 2015 (many small firms of the 2000s)
        old = old_start + (np.sqrt(rng.random(n)) * (reform - old_start)).astype(np.int64)
        new = reform + (rng.random(n) * (today - reform + 1)).astype(np.int64)
        established = np.where(recent, new, old)
    pre_reform = established < REFORM_DAY

    taken_names = taken["name"].to_numpy() if taken is not None else np.array([], dtype=str)
    names, industry = _unique_names(ent_type, district, rng, taken_names)
    taken_org = taken["org_code"].to_numpy() if taken is not None else np.array([], dtype=str)
    org = _unique_org_codes(pre_reform, rng, taken_org)
    division = np.array(vocab.DISTRICT_CODES)[district]
    uscc = make_usccs(np.where(individual, "92", "91"), division, org)
    taken_reg = taken["reg_no"].to_numpy() if taken is not None else np.array([], dtype=str)
    reg_no = _unique_reg_nos(division, individual, pre_reform, rng, taken_reg)

    legal_rep = rng.choice(owners, n).astype(np.int64)
    capital = np.round(
        np.exp(rng.normal(np.where(individual, 1.5, 4.6), np.where(individual, 0.8, 1.2))), 2
    )
    capital[ent_type == 1] *= 20  # 股份有限公司 are large
    status = rng.choice(3, n, p=[0.88, 0.08, 0.04]).astype(np.int8)
    status[established > today - 180] = 0
    town_count = np.bincount(vocab.TOWN_DISTRICT, minlength=len(vocab.DISTRICT_CODES))
    town_offset = np.concatenate([[0], np.cumsum(town_count)[:-1]])
    frame = pd.DataFrame(
        {
            "name": names,
            "ent_type": ent_type.astype(np.int8),
            "district": district.astype(np.int8),
            "division": division,
            "org_code": org,
            "uscc": uscc,
            "reg_no": reg_no,
            "legal_rep": legal_rep,
            "capital": capital,
            "established": established.astype(np.int32),
            "status": status,
            "industry": industry,
            "town": (
                town_offset[district] + (rng.random(n) * town_count[district]).astype(int)
            ).astype(np.int16),
            "road": rng.integers(0, len(vocab.ROADS), n).astype(np.int16),
            "house": rng.integers(1, 300, n).astype(np.int16),
        }
    )
    frame["owner_seq"] = _owner_sequence(frame, taken)
    return frame


def _compose_names(
    ent_type: np.ndarray, district: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Names and the industry index each was composed with."""
    n = len(ent_type)
    chars = vocab.TRADE_NAME_CHARS
    pair = chars[rng.integers(0, len(chars), (2, n))]
    trade = np.strings.add(pair[0], pair[1])
    industry_idx = rng.integers(0, len(vocab.INDUSTRY_TERMS), n)
    industry = vocab.INDUSTRY_TERMS[industry_idx]
    u = rng.random(n)
    prefix = np.where(u < 0.55, "江门市", CITY_PREFIX[district])
    form = np.select(
        [ent_type == 0, ent_type == 1, ent_type == 2, ent_type == 3],
        [
            np.where(rng.random(n) < 0.85, "有限公司", "有限责任公司"),
            "股份有限公司",
            np.where(rng.random(n) < 0.5, "厂", "商行"),
            "合伙企业（普通合伙）",
        ],
        "",
    )
    body = np.strings.add(np.strings.add(prefix, trade), np.strings.add(industry, form))
    # some firms are branches of outside groups: 字号（江门）industry有限公司
    branch = (ent_type == 0) & (u > 0.93)
    body[branch] = np.strings.add(
        np.strings.add(trade[branch], "（江门）"), np.strings.add(industry[branch], form[branch])
    )
    shop = ent_type == vocab.ENT_INDIVIDUAL
    suffix = vocab.SHOP_SUFFIXES[rng.integers(0, len(vocab.SHOP_SUFFIXES), n)]
    body[shop] = np.strings.add(
        np.strings.add(_SHOP_PREFIX[district[shop]], trade[shop]),
        np.strings.add(industry[shop], suffix[shop]),
    )
    return body, industry_idx


def _unique_names(
    ent_type: np.ndarray, district: np.ndarray, rng: np.random.Generator, taken: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    names, industry = _compose_names(ent_type, district, rng)
    names = names.astype(object)
    for _ in range(50):
        clash = _clashes(names, taken)
        if not clash.any():
            return names.astype(str), industry.astype(np.int16)
        names[clash], industry[clash] = _compose_names(ent_type[clash], district[clash], rng)
    raise RuntimeError("could not draw unique enterprise names")


def _unique_org_codes(
    pre_reform: np.ndarray, rng: np.random.Generator, taken: np.ndarray
) -> np.ndarray:
    n = len(pre_reform)
    body = np.empty(n, dtype="U8")
    redo = np.ones(n, dtype=bool)
    for _ in range(50):
        k = int(redo.sum())
        old = rng.integers(10_000_000, 99_999_999, k).astype("U8")
        tail = np.ascontiguousarray(_USCC_CHARS[rng.integers(0, len(_USCC_CHARS), (k, 6))])
        new = np.strings.add("MA", tail.view("U6").reshape(k))
        body[redo] = np.where(pre_reform[redo], old, new)
        codes = make_org_codes(body)
        redo = _clashes(codes, taken)
        if not redo.any():
            return codes
    raise RuntimeError("could not draw unique organisation codes")


def _unique_reg_nos(
    division: np.ndarray,
    individual: np.ndarray,
    pre_reform: np.ndarray,
    rng: np.random.Generator,
    taken: np.ndarray,
) -> np.ndarray:
    """15-digit registration numbers for pre-reform firms, '' for the others."""
    n = len(division)
    out = np.full(n, "", dtype="U15")
    idx = np.flatnonzero(pre_reform)
    if not len(idx):
        return out
    kind = np.where(individual[idx], "6", "0")
    for _ in range(50):
        serial = np.char.zfill(rng.integers(0, 10_000_000, len(idx)).astype("U7"), 7)
        body = np.strings.add(np.strings.add(division[idx], kind), serial)
        out[idx] = make_business_reg_nos(body)
        clash = _clashes(out[idx], taken)
        if not clash.any():
            return out
        # keep the good ones, redraw only the clashing ones
        good = idx[~clash]
        idx, kind = idx[clash], kind[clash]
        taken = np.concatenate([taken, out[good]])
    raise RuntimeError("could not draw unique registration numbers")


def _clashes(values: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """True for every value that repeats an earlier one or one already taken."""
    _, first = np.unique(values, return_index=True)
    clash = np.ones(len(values), dtype=bool)
    clash[first] = False
    if len(taken):
        clash |= np.isin(values, taken)
    return clash


def _owner_sequence(frame: pd.DataFrame, taken: pd.DataFrame | None) -> np.ndarray:
    """0 for an owner's first individual business, 1 for the second... (tax no. suffix)."""
    seq = np.zeros(len(frame), dtype=np.int8)
    shop = frame["ent_type"].to_numpy() == vocab.ENT_INDIVIDUAL
    if not shop.any():
        return seq
    shops = frame.loc[shop, ["legal_rep", "established"]]
    order = shops.sort_values("established", kind="stable").groupby("legal_rep").cumcount()
    seq[shop] = order.reindex(shops.index).to_numpy()
    if taken is not None and len(taken):
        old = taken.loc[taken["ent_type"] == vocab.ENT_INDIVIDUAL, "legal_rep"].value_counts()
        seq[shop] += old.reindex(shops["legal_rep"]).fillna(0).to_numpy().astype(np.int8)
    return seq


def status_names(frame: pd.DataFrame) -> np.ndarray:
    return STATUSES[frame["status"].to_numpy()]


def addresses(frame: pd.DataFrame) -> np.ndarray:
    district = np.array(vocab.DISTRICT_NAMES)[frame["district"].to_numpy()]
    out = np.strings.add("广东省江门市", district)
    out = np.strings.add(out, vocab.TOWN_NAMES[frame["town"].to_numpy()])
    out = np.strings.add(out, vocab.ROADS[frame["road"].to_numpy()])
    return np.strings.add(out, np.strings.add(frame["house"].to_numpy().astype("U4"), "号"))
