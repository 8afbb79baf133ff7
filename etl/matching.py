"""Probabilistic person matching: comparison keys, blocking, Fellegi-Sunter scores, clusters.

One matcher for the nightly unification (ID-less records against everyone) and for
``lake match`` (any list of people, no IDs at all). Everything is whole-column work:
pandas/numpy for keys and agreement levels, rapidfuzz's ``process.cpdist`` for edit
distances of the candidate pairs, scipy's connected components for clusters. Python runs
per distinct *character* (pinyin lookup), never per row or per pair.

The model (docs/decisions/0011-entity-resolution.md): every candidate pair gets one
agreement level per field; each level adds ``log2(m / u)`` to the pair's weight, where ``m``
is the level's share among true matches and ``u`` its share among random pairs. ``u`` is
measured on each run's own data (random pairs); ``m`` comes from pairs that share a valid
resident ID when the data has them (the nightly run), else from :data:`DEFAULT_M`; an
exact name weighs by its own frequency. A pair matches when its weight reaches
``log2(rows)`` (the prior odds of a random pair, :class:`MatchModel`); ``match_score`` is
that weight as a probability (0.5 at the threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.standardise import clean_text, simplified_chinese

ROLES = ("name", "birth_date", "phone", "district", "sex")
MIN_THRESHOLD = 10.0  # log2 Bayes factor a pair needs at least, however short the list
MAX_BLOCK = 400  # blocks bigger than this are skipped (and counted): they are not selective

# Readings of characters as *surnames* where the everyday reading differs (单 shan, not dan).
SURNAME_READINGS = {
    "单": "shan",
    "曾": "zeng",
    "区": "ou",
    "仇": "qiu",
    "解": "xie",
    "查": "zha",
    "朴": "piao",
    "盖": "ge",
    "缪": "miao",
    "种": "chong",
    "秘": "bi",
    "覃": "qin",
    "翟": "zhai",
    "乐": "yue",
    "员": "yun",
    "尉": "yu",
    "万": "wan",
    "折": "she",
    "长": "zhang",
    "重": "chong",
    "沈": "shen",
    "宿": "su",
    "那": "na",
    "卜": "bu",
    "隗": "wei",
}

# agreement levels per field; the last level of each is "disagree"
LEVELS: dict[str, tuple[str, ...]] = {
    "name": ("exact", "pinyin", "truncated", "one_char", "differ"),
    "birth_date": ("exact", "swapped", "one_digit", "differ"),
    "phone": ("exact", "one_digit", "differ"),
    "district": ("same", "differ"),
    "sex": ("same", "differ"),
}
# share of each level among true matches, used when no labelled pairs are at hand
DEFAULT_M: dict[str, tuple[float, ...]] = {
    "name": (0.93, 0.02, 0.03, 0.015, 0.005),
    "birth_date": (0.97, 0.01, 0.015, 0.005),
    "phone": (0.85, 0.02, 0.13),  # people change numbers
    "district": (0.85, 0.15),  # people move
    "sex": (0.995, 0.005),
}
# share of each level among random pairs of Jiangmen residents (measured on the simulated
# population, 30k persons); used for lists too short to measure their own
DEFAULT_U: dict[str, tuple[float, ...]] = {
    "name": (3.5e-5, 4e-5, 2e-5, 0.0042, 0.995705),
    "birth_date": (4.5e-5, 1e-6, 0.001, 0.99895),
    "phone": (1e-6, 1e-6, 0.999998),
    "district": (0.16, 0.84),
    "sex": (0.5, 0.5),
}
MIN_ROWS_TO_MEASURE_U = 2_000


@dataclass(frozen=True)
class MatchModel:
    """Per-field, per-level weights ``log2(m/u)`` (a missing value weighs 0) and the threshold.

    The threshold is the prior: with each row expected to have about one other record of
    the same person among ``n`` rows, a random pair matches with odds ≈ 1/n, so a pair
    needs a Bayes factor of ``log2(n)`` bits to be more likely a match than not.
    """

    weights: dict[str, np.ndarray]
    threshold: float = MIN_THRESHOLD
    m: dict[str, tuple[float, ...]] = field(default_factory=dict)
    u: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def describe(self) -> dict[str, dict[str, float]]:
        return {
            f: {lvl: round(float(w), 2) for lvl, w in zip(LEVELS[f], ws, strict=True)}
            for f, ws in self.weights.items()
        }


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs (row positions) and what blocking cost."""

    left: np.ndarray
    right: np.ndarray
    per_rule: dict[str, int]
    skipped_blocks: int


# --- comparison keys ---------------------------------------------------------------------


def person_match_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison form of each role present: name chars, toneless pinyin, dates, digits.

    ``frame`` has any of the columns in :data:`ROLES` (``name`` required). Returns one row per
    input row with ``name``, ``pinyin``, ``surname``, ``name_tf``, ``birth`` (``YYYYMMDD``),
    ``birth_year``, ``phone``, ``district``, ``sex``; absent roles are all-null columns.
    """
    out = comparison_keys(frame)
    name = out["name"]
    pinyin, surname = name_pinyin(name)
    out.insert(1, "pinyin", pinyin)
    out.insert(2, "surname", surname)
    counts = name.value_counts()
    out.insert(3, "name_tf", name.map(counts / max(len(out), 1)).astype(float).to_numpy())
    return out


def comparison_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """The keys that need no look-up table: normalised name, birth digits, phone, district, sex.

    Whole-column Arrow compute, so the nightly run can key millions of rows batch by batch
    and add the pinyin once per distinct name (:func:`name_pinyin`).
    """
    n = len(frame)

    def keyed(role: str, key_of: Callable[[pd.Series], pd.Series]) -> pd.Series:
        return per_distinct(frame[role], key_of) if role in frame else _nulls(n)

    out = pd.DataFrame({"name": per_distinct(frame["name"], _normalised_name)})
    out["birth"] = keyed("birth_date", _birth_digits)
    out["birth_year"] = out["birth"].str.slice(0, 4)
    out["phone"] = _phone_digits(frame["phone"]) if "phone" in frame else _nulls(n)
    out["district"] = keyed("district", lambda v: _series(_arrow_text(v)))
    out["sex"] = keyed("sex", _sex)
    return out


def per_distinct(values: pd.Series, key_of: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``key_of`` computed once per distinct value and spread back over the rows.

    Names, birth dates, districts and sexes repeat many times in a column of millions of
    rows; their keys cost a fraction when computed on the distinct values.
    """
    codes, uniques = pd.factorize(values.reset_index(drop=True), use_na_sentinel=True)
    keys = key_of(pd.Series(uniques)).reset_index(drop=True)
    arrow = pa.array(keys, from_pandas=True).cast(pa.string())
    taken = pc.take(arrow, pa.array(codes, mask=codes < 0))
    return _series(taken).set_axis(values.index)


def _normalised_name(names: pd.Series) -> pd.Series:
    """No spaces, simplified characters: 陳 偉 and 陈伟 compare as one name."""
    name = pc.replace_substring_regex(_arrow_text(names), r"\s+", "")
    return _series(simplified_chinese(name))


def name_pinyin(names: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Toneless pinyin of each name (surname reading for the first character) and the surname's."""
    width = int(names.str.len().max() or 0) if names.notna().any() else 0
    chars = [names.str.slice(i, i + 1) for i in range(width)]
    seen = set().union(*(set(c.dropna().unique()) for c in chars)) if chars else set()
    table = {c: _reading(c) for c in seen if c}
    surname_table = {c: SURNAME_READINGS.get(c, r) for c, r in table.items()}
    surname = chars[0].map(surname_table).astype("str") if chars else names
    pinyin = surname.fillna("")
    for c in chars[1:]:
        pinyin = pinyin + c.map(table).astype("str").fillna("")
    return pinyin.where(names.notna()), surname.where(names.notna())


@cache
def _reading(char: str) -> str:
    """Toneless pinyin of one character (non-Chinese characters stand for themselves)."""
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(char, style=Style.NORMAL, errors=lambda x: x.lower())[0]


def _arrow_text(values: pd.Series) -> pa.Array:
    """A column as cleaned Arrow strings (NFKC, trimmed, empty → null); dates as ISO text."""
    sample = values.dropna()
    if len(sample) and not isinstance(sample.iloc[0], str):
        values = pd.to_datetime(values, errors="coerce").dt.strftime("%Y-%m-%d")
    arr = pa.array(values, from_pandas=True)
    return clean_text(arr.cast(pa.string()) if arr.type != pa.string() else arr)


def _series(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    """Arrow strings as a pandas ``str`` column without a trip through Python objects."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pd.Series(pd.arrays.ArrowStringArray(arr.cast(pa.large_string()), dtype=_STR))


_STR = pd.StringDtype("pyarrow", na_value=np.nan)


def _nulls(n: int) -> pd.Series:
    return _series(pa.nulls(n, pa.string()))


def _birth_digits(values: pd.Series) -> pd.Series:
    """``YYYYMMDD`` from ISO dates, ``2017/2/23``, ``20170223``, ``2017年2月23日`` or dates."""
    text = _arrow_text(values)
    parts = pc.extract_regex(text, r"^(?P<y>\d{4})\D?(?P<m>\d{1,2})\D?(?P<d>\d{1,2})")
    digits = pc.binary_join_element_wise(
        pc.struct_field(parts, "y"),
        pc.utf8_lpad(pc.struct_field(parts, "m"), width=2, padding="0"),
        pc.utf8_lpad(pc.struct_field(parts, "d"), width=2, padding="0"),
        "",
    )
    return _series(digits)


def _phone_digits(values: pd.Series) -> pd.Series:
    """Digits only, a +86 country code dropped; fewer than 7 digits is no phone."""
    digits = pc.replace_substring_regex(_arrow_text(values), r"[^0-9]", "")
    with_cc = pc.fill_null(pc.match_substring_regex(digits, r"^861[3-9][0-9]{9}$"), False)
    digits = pc.if_else(with_cc, pc.utf8_slice_codeunits(digits, 2), digits)
    long_enough = pc.fill_null(pc.greater_equal(pc.utf8_length(digits), 7), False)
    return _series(pc.if_else(long_enough, digits, pa.scalar(None, pa.string())))


def _sex(values: pd.Series) -> pd.Series:
    text = _series(pc.utf8_upper(_arrow_text(values)))
    mapped = text.map({"男": "M", "女": "F", "M": "M", "F": "F", "MALE": "M", "FEMALE": "F"})
    return mapped.astype("str")


# --- blocking ----------------------------------------------------------------------------

# each rule: the key columns a candidate pair must share
BLOCKING_RULES: dict[str, tuple[str, ...]] = {
    "birth+surname": ("birth", "surname"),
    "pinyin+birth_year": ("pinyin", "birth_year"),
    "phone": ("phone",),
    "name+district": ("name", "district"),
    "pinyin+phone_tail": ("pinyin", "phone_tail"),
}


def candidate_pairs(
    keys: pd.DataFrame, probe: np.ndarray | None = None, max_block: int = MAX_BLOCK
) -> Candidates:
    """Pairs (i, j), i ≠ j, that share at least one blocking key; each pair once.

    With ``probe`` (a boolean mask), only pairs with a probe row on the left are made: the
    nightly run compares ID-less rows with everyone, never two ID'd rows with each other.
    Without it every pair is made once (i < j). Work is one hash join per rule, so it grows
    with the sum of (probe rows × block size), not with n².
    """
    keys = keys.assign(phone_tail=keys["phone"].str.slice(-4))
    n = len(keys)
    probe = np.ones(n, dtype=bool) if probe is None else np.asarray(probe, dtype=bool)
    found: list[np.ndarray] = []
    per_rule: dict[str, int] = {}
    skipped = 0
    for rule, cols in BLOCKING_RULES.items():
        if any(keys[c].isna().all() for c in cols):
            per_rule[rule] = 0
            continue
        code = keys.groupby(list(cols), dropna=True, sort=False).ngroup()
        code = code.fillna(-1).to_numpy(dtype=np.int64)
        has = code >= 0
        sizes = np.bincount(code[has]) if has.any() else np.array([], dtype=np.int64)
        big = np.zeros(n, dtype=bool)
        big[has] = sizes[code[has]] > max_block
        skipped += int((sizes > max_block).sum())
        usable = has & ~big
        right = pd.DataFrame({"code": code[usable], "j": np.flatnonzero(usable)})
        left_rows = usable & probe
        left = pd.DataFrame({"code": code[left_rows], "i": np.flatnonzero(left_rows)})
        joined = left.merge(right, on="code")
        i, j = joined["i"].to_numpy(), joined["j"].to_numpy()
        keep = i != j
        i, j = i[keep], j[keep]
        both_probe = probe[j]  # a probe-probe pair would come twice: keep i < j
        keep = ~both_probe | (i < j)
        pair = i[keep].astype(np.int64) * n + j[keep]
        per_rule[rule] = int(len(pair))
        found.append(pair)
    pairs = np.unique(np.concatenate(found)) if found else np.array([], dtype=np.int64)
    return Candidates(pairs // max(n, 1), pairs % max(n, 1), per_rule, skipped)


# --- comparison --------------------------------------------------------------------------


def comparison_levels(keys: pd.DataFrame, left: np.ndarray, right: np.ndarray) -> pd.DataFrame:
    """Agreement level index per field for each pair (-1 where a value is missing)."""
    a = keys.iloc[left].reset_index(drop=True)
    b = keys.iloc[right].reset_index(drop=True)
    return pd.DataFrame(
        {
            "name": _name_levels(a, b),
            "birth_date": _birth_levels(a["birth"], b["birth"]),
            "phone": _phone_levels(a["phone"], b["phone"]),
            "district": _equal_levels(a["district"], b["district"]),
            "sex": _equal_levels(a["sex"], b["sex"]),
        }
    )


def _missing(a: pd.Series, b: pd.Series) -> np.ndarray:
    return (a.isna() | b.isna()).to_numpy()


def _levenshtein(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Edit distance per pair, a swap of neighbours counting one (optimal string alignment)."""
    from rapidfuzz import process
    from rapidfuzz.distance import OSA

    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    return process.cpdist(
        a.fillna("").tolist(), b.fillna("").tolist(), scorer=OSA.distance, workers=-1
    ).astype(np.int64)


def _name_levels(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Exact; same pinyin (homophone); last character dropped; one character off; differ."""
    x, y = a["name"], b["name"]
    exact = (x == y).fillna(False).to_numpy()
    pinyin = (a["pinyin"] == b["pinyin"]).fillna(False).to_numpy()
    shorter = np.minimum(x.str.len(), y.str.len()).fillna(0).to_numpy()
    truncated = ((x.str.slice(0, -1) == y) | (y.str.slice(0, -1) == x)).fillna(False).to_numpy()
    truncated = truncated & (shorter >= 2)
    one_char = (_levenshtein(x, y) <= 1) & (shorter >= 2)
    one_char = one_char | (_levenshtein(a["pinyin"], b["pinyin"]) <= 1)
    level = np.select([exact, pinyin, truncated, one_char], [0, 1, 2, 3], 4)
    return np.where(_missing(x, y), -1, level)


def _birth_levels(a: pd.Series, b: pd.Series) -> np.ndarray:
    exact = (a == b).fillna(False).to_numpy()
    swapped = (
        (a.str.slice(0, 4) == b.str.slice(0, 4))
        & (a.str.slice(4, 6) == b.str.slice(6, 8))
        & (a.str.slice(6, 8) == b.str.slice(4, 6))
    ).fillna(False).to_numpy() & ~exact
    one = _hamming(a, b, 8) == 1
    level = np.select([exact, swapped, one], [0, 1, 2], 3)
    return np.where(_missing(a, b), -1, level)


def _phone_levels(a: pd.Series, b: pd.Series) -> np.ndarray:
    exact = (a == b).fillna(False).to_numpy()
    one = _levenshtein(a, b) == 1
    level = np.select([exact, one], [0, 1], 2)
    return np.where(_missing(a, b), -1, level)


def _equal_levels(a: pd.Series, b: pd.Series) -> np.ndarray:
    level = np.where((a == b).fillna(False).to_numpy(), 0, 1)
    return np.where(_missing(a, b), -1, level)


def _hamming(a: pd.Series, b: pd.Series, width: int) -> np.ndarray:
    """Differing positions of two equal-length digit strings (-1 when lengths differ)."""
    same_len = (a.str.len() == width) & (b.str.len() == width)
    same_len = same_len.fillna(False).to_numpy()
    x = np.frombuffer(a.fillna("").str.pad(width).str.slice(0, width).str.cat().encode(), "u1")
    y = np.frombuffer(b.fillna("").str.pad(width).str.slice(0, width).str.cat().encode(), "u1")
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    diff = (x.reshape(-1, width) != y.reshape(-1, width)).sum(axis=1)
    return np.where(same_len, diff, -1)


# --- the model ---------------------------------------------------------------------------


def u_probabilities(
    keys: pd.DataFrame, rng: np.random.Generator, pairs: int = 200_000
) -> dict[str, tuple[float, ...]]:
    """Share of each agreement level among random pairs (almost all non-matches)."""
    n = len(keys)
    if n < MIN_ROWS_TO_MEASURE_U:
        return DEFAULT_U
    left = rng.integers(0, n, pairs)
    right = rng.integers(0, n, pairs)
    keep = left != right
    return random_pair_shares(keys, left[keep], right[keep])


def random_pair_shares(
    keys: pd.DataFrame, left: np.ndarray, right: np.ndarray
) -> dict[str, tuple[float, ...]]:
    """Share of each agreement level among the given (random) pairs: the ``u`` of the model."""
    return _level_shares(comparison_levels(keys, left, right), floor=1e-6)


def m_probabilities(
    keys: pd.DataFrame, same_entity: pd.Series, limit: int = 200_000
) -> dict[str, tuple[float, ...]]:
    """Share of each level among pairs of rows known to be one person (same valid ID)."""
    groups = pd.DataFrame({"g": same_entity.to_numpy(), "i": np.arange(len(keys))}).dropna()
    first = groups.groupby("g")["i"].transform("first").to_numpy()
    i = groups["i"].to_numpy()
    keep = first != i
    left, right = first[keep][:limit], i[keep][:limit]
    if len(left) < 100:
        return DEFAULT_M
    shares = _level_shares(comparison_levels(keys, left, right), floor=1e-4)
    # labelled pairs share an ID, so they are cleaner than ID-less records: keep some doubt
    return {f: _blend(shares[f], DEFAULT_M[f]) for f in LEVELS}


def _blend(measured: tuple[float, ...], prior: tuple[float, ...]) -> tuple[float, ...]:
    mixed = 0.5 * np.asarray(measured) + 0.5 * np.asarray(prior)
    return tuple(float(x) for x in mixed / mixed.sum())


def _level_shares(levels: pd.DataFrame, floor: float) -> dict[str, tuple[float, ...]]:
    out = {}
    for f, names in LEVELS.items():
        seen = levels[f].to_numpy()
        seen = seen[seen >= 0]
        counts = np.bincount(seen, minlength=len(names)).astype(float)
        shares = np.maximum(counts / max(counts.sum(), 1.0), floor)
        out[f] = tuple(float(x) for x in shares / shares.sum())
    return out


def match_model(
    m: dict[str, tuple[float, ...]], u: dict[str, tuple[float, ...]], rows: int
) -> MatchModel:
    """Weights from m and u; the threshold from the number of rows (the prior, see above)."""
    weights = {f: np.log2(np.asarray(m[f]) / np.asarray(u[f])) for f in LEVELS}
    return MatchModel(weights, max(MIN_THRESHOLD, float(np.log2(max(rows, 1)))), m, u)


def pair_weights(
    levels: pd.DataFrame, model: MatchModel, name_tf: np.ndarray | None = None
) -> np.ndarray:
    """Sum of ``log2(m/u)`` over fields; a missing value (level -1) adds nothing.

    With ``name_tf`` (the share of rows carrying the pair's name) an exact name weighs
    ``log2(m / tf)`` instead: 陈伟 agreeing says less than a rare name agreeing.
    """
    total = np.zeros(len(levels))
    for f, w in model.weights.items():
        lv = levels[f].to_numpy()
        total += np.where(lv >= 0, w[np.maximum(lv, 0)], 0.0)
    if name_tf is not None:
        exact = levels["name"].to_numpy() == 0
        tf = np.maximum(np.nan_to_num(np.asarray(name_tf, dtype=float), nan=1.0), 1e-9)
        adjusted = np.log2(model.m["name"][0] / tf)
        total += np.where(exact, adjusted - model.weights["name"][0], 0.0)
    return total


PAIRS_PER_CHUNK = 262_144


def scored_pairs(
    keys: pd.DataFrame,
    left: np.ndarray,
    right: np.ndarray,
    model: MatchModel,
    name_tf: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`pair_weights` of :func:`comparison_levels` for each pair, a chunk at a time.

    A level depends on its pair alone, so chunks give the same weights as one pass; the
    keys of both sides are copied per chunk only (at full scale 1.7 million pairs would
    otherwise copy about a gigabyte of key columns at once). ``name_tf`` is per pair.
    """
    out = np.empty(len(left))
    for start in range(0, len(left), PAIRS_PER_CHUNK):
        part = slice(start, start + PAIRS_PER_CHUNK)
        levels = comparison_levels(keys, left[part], right[part])
        out[part] = pair_weights(levels, model, None if name_tf is None else name_tf[part])
    return out


def weight_to_score(weights: np.ndarray, threshold: float) -> np.ndarray:
    """A pair weight as a match probability: 0.5 at the threshold."""
    return 1.0 / (1.0 + np.exp2(-(np.asarray(weights, dtype=float) - threshold)))


# --- clusters ----------------------------------------------------------------------------


def best_links(
    left: np.ndarray, right: np.ndarray, weights: np.ndarray, threshold: float
) -> pd.DataFrame:
    """For each row that has a pair above the threshold, its best partner (either side).

    Returns columns ``row``, ``partner``, ``weight``. Each row gets at most one link, so a
    cluster grown from links can hold at most one row that never links out (an ID'd row in
    the nightly run): two different valid IDs never end up together.
    """
    ok = weights >= threshold
    both = pd.DataFrame(
        {
            "row": np.concatenate([left[ok], right[ok]]),
            "partner": np.concatenate([right[ok], left[ok]]),
            "weight": np.concatenate([weights[ok], weights[ok]]),
        }
    )
    both = both.sort_values(["row", "weight", "partner"], ascending=[True, False, True])
    return both.drop_duplicates("row", keep="first").reset_index(drop=True)


def cluster_labels(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of the graph with ``n`` nodes and edges (left, right)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


@dataclass(frozen=True)
class ListMatch:
    """``lake match`` on a list: a cluster per row, its link score, what it cost."""

    cluster: np.ndarray
    score: np.ndarray
    candidates: Candidates
    model: MatchModel


def dedup_list(frame: pd.DataFrame, seed: int = 0) -> ListMatch:
    """Cluster the rows of a list of people that carries no IDs (``lake match``)."""
    keys = person_match_keys(frame)
    cands = candidate_pairs(keys)
    u = u_probabilities(keys, np.random.default_rng(seed))
    model = match_model(DEFAULT_M, u, len(keys))
    weights = scored_pairs(
        keys, cands.left, cands.right, model, keys["name_tf"].to_numpy()[cands.left]
    )
    links = best_links(cands.left, cands.right, weights, model.threshold)
    labels = cluster_labels(len(keys), links["row"].to_numpy(), links["partner"].to_numpy())
    score = np.full(len(keys), np.nan)
    score[links["row"].to_numpy()] = weight_to_score(links["weight"].to_numpy(), model.threshold)
    return ListMatch(labels, score, cands, model)
