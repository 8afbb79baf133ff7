"""The enterprise fallback: legacy records no code links, joined on name and address.

After the code edges (:func:`etl.unify_enterprise.resolve_enterprises`) every record sits in
a *code group*. A group with a USCC or a registration number is *registered*; the others
are *orphans* (a legacy org-code certificate or tax record whose code reaches no register
row). Three passes, each a vectorised comparison over blocks:

1. a group without a USCC (an orphan, or a registration record that has none) joins the
   **one** USCC group it matches;
2. an orphan still alone joins the **one** registration-only group it matches;
3. orphans still alone join the **one** other orphan group they match (both ways unique),
   so the records of a firm missing from the register become one enterprise, still
   flagged unlinked.

A pair is compared on the *core* of the name (the normalised name without its city and
district prefix and without ``(江门)``), Levenshtein similarity by rapidfuzz; on the
normalised address (no ``广东省江门市`` prefix, ``號`` → ``号``) when both have one; and on the
legal representative's name when both have one. A district both sides know (address, name
prefix, or the division code inside a USCC or 15-character tax number) must agree. The
score is the mean of the name similarity and the best corroboration (address similarity,
same representative), a missing corroboration counting :data:`NO_EVIDENCE`: an identical
core alone reaches the threshold, a name one character off needs the address or the
representative, the same name at another address does not. Two matching candidate groups
are ambiguous and link nothing. Orphans never carry a USCC, so no link here can join two
different USCCs; two orphan groups with different organisation codes or owner IDs are
never joined either.

Blocks: the whole core first (most variants are exact there); an orphan that shares it with
no other group then tries three of the core's first four characters (0-1-2, 0-1-3, 0-2-3,
1-2-3), each with the core's last character (the legal form's or shop's: 司, 厂, 店 …), so
one changed character of the trade name still leaves a shared key; blocks over
:data:`MAX_BLOCK` target rows are skipped and counted. Cores and keys are computed once per
distinct name and numbered, so blocking is integer work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from catalog.identifiers import JIANGMEN_DIVISIONS

THRESHOLD = 0.88  # mean of name similarity and corroboration needed to link
MIN_NAME = 0.75  # and the cores must be at least this alike
NO_EVIDENCE = 0.8  # corroboration counted when neither address nor representative is known
MAX_BLOCK = 1000  # target rows in one block before the block is skipped
_DISTRICTS = "|".join(JIANGMEN_DIVISIONS.values())  # every name three characters long
_DIVISION_OF_DISTRICT = {name: code for code, name in JIANGMEN_DIVISIONS.items()}
_NAME_PREFIX = rf"^(?:广东省)?(?:江门市)?(?:{_DISTRICTS})?"
_ADDRESS_PREFIX = r"^(?:广东省?)?(?:江门市?)?"
# three of the core's first four characters per key: one wrong character leaves one intact
_BLOCK_KEYS = ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3))


@dataclass(frozen=True)
class FuzzyFigures:
    """What the fallback looked at (``unification_results`` details)."""

    probe_rows: int = 0  # rows of groups without a USCC that were compared
    candidate_pairs: int = 0
    skipped_blocks: int = 0
    linked_to_registered: int = 0  # orphan groups joined to a registered enterprise
    linked_orphans: int = 0  # orphan groups joined to another orphan group
    ambiguous: int = 0  # orphan groups with two matching candidates: left alone

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FuzzyLinks:
    """Edges from an orphan row to the row it joins, with the pair's score."""

    left: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    right: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    figures: FuzzyFigures = FuzzyFigures()


def fuzzy_links(m: pd.DataFrame, group: np.ndarray) -> FuzzyLinks:
    """Name-and-address edges for the code groups ``group`` of ``m`` that lack a USCC."""
    named = m["name_norm"].notna().to_numpy()
    with_uscc = any_per_group(m["uscc"].notna(), group)
    with_reg = any_per_group(m["reg_no"].notna(), group)
    orphan = named & ~with_uscc & ~with_reg
    if not (named & ~with_uscc).any():
        return FuzzyLinks()
    blocks = Blocks.of(m["name_norm"], group)
    # 1. groups without a USCC (orphans and registration-only) → the one USCC group
    first, skipped = blocks.pairs(named & ~with_uscc, named & with_uscc)
    to_uscc, ambiguous = _unique_best(_scored(first, m, blocks), "group", "group_to")
    # 2. orphans still alone → the one registration-only group
    left_over = orphan & ~np.isin(group, to_uscc["group"])
    second, skipped_2 = blocks.pairs(left_over, named & with_reg & ~with_uscc)
    to_reg, ambiguous_2 = _unique_best(_scored(second, m, blocks), "group", "group_to")
    # 3. orphans still alone → the one other orphan group that matches only them
    left_over &= ~np.isin(group, to_reg["group"])
    third, skipped_3 = blocks.pairs(left_over, left_over)
    third = third[third["group"] < third["group_to"]]
    third = _compatible(third, _codes_per_group(m, group, left_over))
    orphan_pairs, ambiguous_3 = _mutual_unique(_scored(third, m, blocks))
    figures = FuzzyFigures(
        probe_rows=int((named & ~with_uscc).sum()),
        candidate_pairs=len(first) + len(second) + len(third),
        skipped_blocks=skipped + skipped_2 + skipped_3,
        linked_to_registered=len(to_uscc) + len(to_reg),
        linked_orphans=2 * len(orphan_pairs),
        ambiguous=ambiguous + ambiguous_2 + ambiguous_3,
    )
    edges = ["row", "row_to", "score"]
    both = pd.concat(
        [
            to_uscc[edges],
            to_reg[edges],
            orphan_pairs[edges],
            orphan_pairs[["row_to", "row", "score"]].set_axis(edges, axis=1),
        ],
        ignore_index=True,
    )
    return FuzzyLinks(
        both["row"].to_numpy(np.int64),
        both["row_to"].to_numpy(np.int64),
        both["score"].to_numpy(np.float64),
        figures,
    )


def any_per_group(flags: pd.Series | np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per row: whether any row of its group has the flag."""
    per_group = np.zeros(group.max() + 1 if len(group) else 0, dtype=bool)
    per_group[group[np.asarray(flags, dtype=bool)]] = True
    return per_group[group]


def name_cores(names: pa.Array) -> pa.Array:
    """The normalised name without city, district and ``(江门)``: what two spellings share."""
    core = pc.replace_substring_regex(names, _NAME_PREFIX, "")
    return pc.replace_substring(core, "(江门)", "")


@dataclass(frozen=True)
class Blocks:
    """Every mention's name core and block keys, as integer ids (-1: none).

    Cores and keys are computed once per *distinct* name (about a third of the mentions)
    and numbered, so blocking is integer work over the night.
    """

    group: np.ndarray
    cores: pa.Array  # the distinct cores
    core: np.ndarray  # per row: its core's position in ``cores``
    keys: tuple[np.ndarray, ...]  # per row: one key id per :data:`_BLOCK_KEYS` triple
    unique_core: np.ndarray  # per row: no other group has its core

    @classmethod
    def of(cls, names: pd.Series, group: np.ndarray) -> Blocks:
        text = pa.array(names.astype("str"), pa.string(), from_pandas=True)
        if isinstance(text, pa.ChunkedArray):
            text = text.combine_chunks()
        distinct = pc.dictionary_encode(text)
        per_name = pc.dictionary_encode(name_cores(distinct.dictionary))
        cores = per_name.dictionary
        core_of_name = _ids(per_name.indices)
        core = np.where(distinct.indices.is_valid(), core_of_name[_ids(distinct.indices)], -1)
        long_enough = pc.greater_equal(pc.utf8_length(cores), 4)
        last = pc.utf8_slice_codeunits(cores, -1)  # the legal form's or shop's last character
        keys = []
        for positions in _BLOCK_KEYS:
            chars = [pc.utf8_slice_codeunits(cores, i, i + 1) for i in positions]
            key = pc.binary_join_element_wise(*chars, last, "")
            key_of_core = _ids(pc.dictionary_encode(key).indices)
            key_of_core[~long_enough.to_numpy(zero_copy_only=False)] = -1
            keys.append(np.where(core >= 0, key_of_core[np.maximum(core, 0)], -1))
        groups_per_core = np.bincount(
            pd.DataFrame({"core": core, "group": group}).drop_duplicates()["core"].to_numpy() + 1,
            minlength=len(cores) + 1,
        )[1:]
        unique_core = (core >= 0) & (groups_per_core[np.maximum(core, 0)] == 1)
        return cls(group, cores, core, tuple(keys), unique_core)

    def pairs(self, probe: np.ndarray, target: np.ndarray) -> tuple[pd.DataFrame, int]:
        """``row, row_to, group, group_to``: probe × target rows of other groups sharing a key.

        The whole core is the first key; only probes whose core no other group has at all
        go on to the character keys (a probe with an exact partner anywhere is decided on
        it, in this pass or a later one).
        """
        exact, skipped = self._sharing(self.core, probe, target)
        alone = probe & self.unique_core
        alone[exact["row"].to_numpy()] = False
        parts = [exact]
        for key in self.keys:
            fuzzy, too_big = self._sharing(key, alone, target)
            parts.append(fuzzy)
            skipped += too_big
        pairs = pd.concat(parts, ignore_index=True).drop_duplicates()
        return pairs.reset_index(drop=True), skipped

    def core_text(self, rows: np.ndarray, by_core: bool = False) -> pd.Series:
        """The cores of ``rows`` (or of core ids, ``by_core``) as text."""
        ids = rows if by_core else self.core[rows]
        return pd.Series(self.cores.take(pa.array(ids)).to_pylist(), dtype="str")

    def _sharing(
        self, key: np.ndarray, probe: np.ndarray, target: np.ndarray
    ) -> tuple[pd.DataFrame, int]:
        probe = probe & (key >= 0)
        hit = target & np.isin(key, np.unique(key[probe]))
        targets = pd.DataFrame({"key": key[hit], "row_to": np.flatnonzero(hit)})
        sizes = targets["key"].value_counts()
        too_big = sizes.index[sizes > MAX_BLOCK]
        targets = targets[~targets["key"].isin(too_big)]
        probes = pd.DataFrame({"key": key[probe], "row": np.flatnonzero(probe)})
        pairs = probes.merge(targets, on="key")[["row", "row_to"]]
        pairs = pairs.assign(
            group=self.group[pairs["row"].to_numpy()],
            group_to=self.group[pairs["row_to"].to_numpy()],
        )
        return pairs[pairs["group"] != pairs["group_to"]], len(too_big)


def _ids(indices: pa.Array) -> np.ndarray:
    """Dictionary indices as int64, -1 for null."""
    return np.array(pc.fill_null(indices.cast(pa.int64()), -1), dtype=np.int64)


def _attributes(m: pd.DataFrame, blocks: Blocks, rows: np.ndarray) -> pd.DataFrame:
    """Core, normalised address, representative and district of the ``rows`` compared."""
    core = blocks.core_text(rows)
    name = m["name_norm"].iloc[rows].reset_index(drop=True).astype("str")
    addr = (
        m["address"]
        .iloc[rows]
        .reset_index(drop=True)
        .astype("str")
        .str.replace(r"\s+", "", regex=True)
        .str.replace(_ADDRESS_PREFIX, "", regex=True)
        .str.replace("號", "号", regex=False)
    )
    division = m["division"].iloc[rows].reset_index(drop=True).astype("str")
    district = (
        addr.str.slice(0, 3)
        .map(_DIVISION_OF_DISTRICT)
        .fillna(
            name.str.replace("^江门市", "", regex=True).str.slice(0, 3).map(_DIVISION_OF_DISTRICT)
        )
        .fillna(division.where(division.isin(list(JIANGMEN_DIVISIONS))))
    )
    rep = m["legal_rep_name"].iloc[rows] if "legal_rep_name" in m else pd.Series(None, index=rows)
    frame = pd.DataFrame(
        {
            "core": core,
            "addr": addr.where(addr != ""),
            "rep": rep.astype("str").reset_index(drop=True),
            "district": district.astype("str"),
        }
    )
    return frame.set_axis(rows)  # positions, not labels: every part above counts from 0


def _scored(pairs: pd.DataFrame, m: pd.DataFrame, blocks: Blocks) -> pd.DataFrame:
    """The pairs that pass, with ``score``; a district known on both sides must agree."""
    if pairs.empty:
        return pairs.assign(score=pd.Series(dtype=float))
    # the names first, once per pair of distinct cores: most candidates end there
    cores = pd.DataFrame(
        {"a": blocks.core[pairs["row"].to_numpy()], "b": blocks.core[pairs["row_to"].to_numpy()]}
    )
    distinct = cores.drop_duplicates()
    alike = _similarity(
        blocks.core_text(distinct["a"].to_numpy(), by_core=True),
        blocks.core_text(distinct["b"].to_numpy(), by_core=True),
    )
    name = cores.merge(distinct.assign(name=alike), on=["a", "b"], how="left")["name"].to_numpy()
    keep = name >= max(MIN_NAME, 2 * THRESHOLD - 1)  # below, no corroboration reaches it
    pairs, name = pairs[keep].reset_index(drop=True), name[keep]
    if pairs.empty:
        return pairs.assign(score=pd.Series(dtype=float))
    attrs = _attributes(m, blocks, np.union1d(pairs["row"], pairs["row_to"]))
    pairs = pairs.join(attrs, on="row").join(attrs.add_suffix("_to"), on="row_to")
    addr = _similarity(pairs["addr"], pairs["addr_to"])
    rep = np.where(
        pairs["rep"].notna() & pairs["rep_to"].notna(),
        (pairs["rep"] == pairs["rep_to"]).astype(float),
        np.nan,
    )
    evidence = np.fmax(addr, rep)  # NaN only where neither is known on both sides
    evidence = np.where(np.isnan(evidence), NO_EVIDENCE, evidence)
    score = (name + evidence) / 2
    district_clash = (
        pairs["district"].notna()
        & pairs["district_to"].notna()
        & (pairs["district"] != pairs["district_to"])
    ).to_numpy()
    ok = (score >= THRESHOLD) & (name >= MIN_NAME) & ~district_clash
    return pairs[ok].assign(score=np.round(score[ok], 4))


def core_similarity(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Similarity of two names' cores per pair (NaN where either is missing)."""

    def cores(names: pd.Series) -> pd.Series:
        arrow = pa.array(names.astype("str"), pa.string(), from_pandas=True)
        return pd.Series(name_cores(arrow).to_pandas().to_numpy(), dtype="str")

    return _similarity(cores(left), cores(right))


def _similarity(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Normalised Levenshtein similarity per pair (NaN where either side is missing)."""
    both = (left.notna() & right.notna()).to_numpy()
    out = np.full(len(left), np.nan)
    if both.any():
        out[both] = process.cpdist(
            left[both].tolist(),
            right[both].tolist(),
            scorer=Levenshtein.normalized_similarity,
            workers=1,
        )
    return out


def _unique_best(pairs: pd.DataFrame, by: str, to: str) -> tuple[pd.DataFrame, int]:
    """Per ``by`` group its best pair, when only one ``to`` group matched; and how many did not."""
    if pairs.empty:
        return pairs, 0
    matched = pairs.groupby(by)[to].nunique()
    single = matched.index[matched == 1]
    best = pairs[pairs[by].isin(single)].sort_values([by, "score"], ascending=[True, False])
    return best.drop_duplicates(by), int((matched > 1).sum())


def _mutual_unique(pairs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Orphan pairs (each once, ``group < group_to``) whose two groups matched only each other."""
    if pairs.empty:
        return pairs, 0
    ends = pd.concat(
        [
            pairs[["group", "group_to"]],
            pairs[["group_to", "group"]].set_axis(["group", "group_to"], axis=1),
        ]
    ).drop_duplicates()
    partners = ends.groupby("group").size()
    single = partners.index[partners == 1]
    ok = pairs["group"].isin(single) & pairs["group_to"].isin(single)
    best = pairs[ok].sort_values(["group", "score"], ascending=[True, False])
    return best.drop_duplicates("group"), int((partners > 1).sum())


def _compatible(pairs: pd.DataFrame, codes: pd.DataFrame) -> pd.DataFrame:
    """Pairs of orphan groups whose codes do not contradict (two org codes, two owners)."""
    if pairs.empty:
        return pairs
    keep = np.ones(len(pairs), dtype=bool)
    for code in codes.columns:
        mine = pairs["group"].map(codes[code])
        theirs = pairs["group_to"].map(codes[code])
        keep &= ~(mine.notna() & theirs.notna() & (mine != theirs)).to_numpy()
    return pairs[keep]


def _codes_per_group(m: pd.DataFrame, group: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    """The organisation code and owner ID of each group of ``rows`` (its first non-null)."""
    frame = m.loc[rows, ["org_code", "owner_id"]].assign(group=group[rows])
    return frame.groupby("group").first()
