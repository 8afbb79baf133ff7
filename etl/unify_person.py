"""Unified persons: every person a clean dataset mentions, one row per real person.

Three parts (docs/architecture.md §5 unified zone, docs/decisions/0011 and 0014):

- :func:`person_mentions` projects one clean batch of a dataset onto the common mention
  columns (who the row is about, and in which role) and its comparison keys — Arrow column
  work, batch by batch, so the night never holds its clean rows in Python objects;
- :func:`resolve_persons` links the mentions loaded in a :class:`~etl.unify_workspace.Workspace`:
  a valid resident ID links exactly (a SQL key); only the ID-less mentions (0.5 % at full
  scale) and the rows sharing a blocking key with them go through :mod:`etl.matching`'s
  probabilistic matcher (never two valid IDs together);
- :data:`PERSON_TABLE` applies survivorship (:data:`SURVIVORSHIP`) per person in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.identifiers import JIANGMEN_DIVISIONS, is_valid_resident_id
from etl.matching import (
    BLOCKING_RULES,
    DEFAULT_U,
    MAX_BLOCK,
    MIN_ROWS_TO_MEASURE_U,
    Candidates,
    MatchModel,
    best_links,
    cluster_labels,
    comparison_keys,
    m_probabilities,
    match_model,
    name_pinyin,
    random_pair_shares,
    scored_pairs,
    weight_to_score,
)
from etl.unify_workspace import Stopwatch, Workspace

MENTION_COLUMNS = [
    "dataset",
    "source_key",
    "role",
    "id_no",
    "name",
    "sex",
    "birth_date",
    "phone",
    "district",
    "address",
    "updated_at",
]
# the comparison keys each mention carries into the workspace (pinyin is added per name)
KEY_COLUMNS = ["k_name", "k_pinyin", "k_surname", "k_birth", "k_phone", "k_district", "k_sex"]
# and the two blocking keys cut from them, kept so that blocking reads columns as they lie
CUT_KEYS = ["k_birth_year", "k_phone_tail"]
SUBJECT, LEGAL_REP, OWNER = "subject", "legal_rep", "owner"
# the clean columns person_mentions reads from the datasets only it reads (the big person
# registers): the night reads just these, not every column of millions of rows
PERSON_COLUMNS = {
    "gongan.population": [
        "person_no", "id_no", "name", "sex", "birth_date", "division_code", "address",
        "updated_at",
    ],
    "renshe.insured_person": [
        "insured_no", "id_no", "name", "sex", "birth_date", "phone", "updated_at",
    ],
    "weiji.health_record": [
        "record_no", "id_no", "name", "sex", "birth_date", "phone", "address", "updated_at",
    ],
}  # fmt: skip
PERSON_PREFIX = "P"

# Which source wins a field (lower rank wins; ties go to the most recent update).
SOURCE_RANK = {
    "gongan.population": 0,  # public security: the register of record for identity
    "gongshang.enterprise_registration": 1,  # checked against the ID card at registration
    "renshe.insured_person": 2,
    "weiji.health_record": 3,
    "xingzheng.service_case": 4,
    "guoshui.taxpayer": 5,
    "dishui.taxpayer": 5,
}
SURVIVORSHIP = {
    "name": "source rank (public security first), then most recent update",
    "sex": "source rank (public security first), then most recent update",
    "birth_date": "source rank (public security first), then most recent update",
    "phone": "most recent update",
    "address": "most recent update",
    "district": "most recent update",
}
_DISTRICT_NAMES = pa.array(list(JIANGMEN_DIVISIONS.values()))
_DISTRICT_CODES = pa.array(list(JIANGMEN_DIVISIONS.keys()))
_DISTRICT_PATTERN = "(?P<d>" + "|".join(JIANGMEN_DIVISIONS.values()) + ")"


# Clean rows were judged against their own partition date by validation; here an ID is
# "valid" by its shape and check character, whatever night it arrived (so a rebuild from
# older partitions gives the same clusters).
ANY_NIGHT = date(2200, 1, 1)


def person_mentions(dataset_id: str, batch: pa.Table | pd.DataFrame) -> pa.Table:
    """The persons one clean batch mentions: :data:`MENTION_COLUMNS` + :data:`KEY_COLUMNS`.

    Subjects: the register rows of population, insured persons, health records and the
    natural-person applicants of service cases (every such row, with or without an ID).
    Mentions inside enterprise records — the legal representative of a registration, the
    owner of an individual business taxed under ``ID + 00`` — are taken when they carry a
    valid ID (a name alone cannot tell two people apart). An ID that is not valid is
    dropped (the row becomes ID-less); a valid one fills a missing birth date and sex.
    """
    b = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
    cols: dict[str, pa.ChunkedArray | pa.Array | None]
    if dataset_id == "gongan.population":
        cols = _roles(b, "person_no", SUBJECT, "id_no", "name", "sex", "birth_date", None)
        cols["district"], cols["address"] = _text(b, "division_code"), _text(b, "address")
    elif dataset_id == "renshe.insured_person":
        cols = _roles(b, "insured_no", SUBJECT, "id_no", "name", "sex", "birth_date", "phone")
    elif dataset_id == "weiji.health_record":
        cols = _roles(b, "record_no", SUBJECT, "id_no", "name", "sex", "birth_date", "phone")
        cols["address"] = _text(b, "address")
        cols["district"] = _district_of(cols["address"])
    elif dataset_id == "xingzheng.service_case":
        b = b.filter(pc.fill_null(pc.equal(_text(b, "applicant_type"), "自然人"), False))
        cols = _roles(
            b, "case_no", SUBJECT, "applicant_id_no", "applicant_name", None,
            "applicant_birth_date", "phone",
        )  # fmt: skip
        cols["district"] = _text(b, "district_code")
    elif dataset_id == "gongshang.enterprise_registration":
        b = b.filter(_valid_ids(_text(b, "legal_rep_id_no")))
        cols = _roles(b, "reg_id", LEGAL_REP, "legal_rep_id_no", "legal_rep_name", None, None, None)
    elif dataset_id in ("guoshui.taxpayer", "dishui.taxpayer"):
        owner = owner_ids(pd.Series(_text(b, "tax_no").to_pandas()))
        b = b.filter(pa.array(owner.notna().to_numpy()))
        key = "tax_no" if dataset_id == "guoshui.taxpayer" else "taxpayer_id"
        phone = "phone" if "phone" in b.column_names else None
        cols = _roles(b, key, OWNER, None, "legal_rep_name", None, None, phone)
        cols["id_no"] = pa.array(owner.dropna().to_numpy(dtype=object), pa.string())
    else:
        return empty_mentions()
    n = b.num_rows
    cols["dataset"] = pa.repeat(pa.scalar(dataset_id, pa.string()), n)
    cols["updated_at"] = pc.cast(b.column("updated_at"), pa.timestamp("us"))
    for name in ("district", "address"):
        cols.setdefault(name, None)
    _with_id_facts(cols, n)
    table = pa.table({c: _filled(cols[c], n) for c in MENTION_COLUMNS})
    return _with_keys(table).append_column("filled", _filled_bits(table))


def empty_mentions() -> pa.Table:
    """No mentions, with the columns and types a full batch has."""
    fields = [pa.field(c, pa.string()) for c in MENTION_COLUMNS + KEY_COLUMNS + CUT_KEYS]
    schema = pa.schema(fields).set(10, pa.field("updated_at", pa.timestamp("us")))
    return schema.append(pa.field("filled", pa.int16())).empty_table()


def _filled_bits(table: pa.Table) -> pa.Array:
    """Which surviving fields a mention has (bit ``i``: the ``i``-th of :data:`SURVIVING`),
    so survivorship groups numbers and never reads the text columns to test for nulls."""
    bits = np.zeros(table.num_rows, dtype=np.int16)
    for i, col in enumerate(SURVIVING):
        bits |= table.column(col).is_valid().to_numpy(zero_copy_only=False).astype(np.int16) << i
    return pa.array(bits)


def owner_ids(tax_no: pd.Series) -> pd.Series:
    """The owner's resident ID in an individual business's tax number (``ID + 00``), else null."""
    text = tax_no.astype("str")
    candidate = text.str.slice(0, 18).where(text.str.len() == 20)
    valid = is_valid_resident_id(candidate.fillna("").to_numpy(dtype=str), ANY_NIGHT)
    return candidate.where(valid)


def _text(b: pa.Table, name: str | None) -> pa.ChunkedArray | None:
    """A column as text (dates as ISO ``YYYY-MM-DD``), or None when there is no such role."""
    if name is None:
        return None
    col = b.column(name)
    if pa.types.is_timestamp(col.type):
        return pc.strftime(col, "%Y-%m-%d")
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _roles(
    b: pa.Table,
    key: str,
    role: str,
    id_no: str | None,
    name: str,
    sex: str | None,
    birth: str | None,
    phone: str | None,
) -> dict[str, pa.ChunkedArray | None]:
    return {
        "source_key": _text(b, key),
        "role": pa.repeat(pa.scalar(role, pa.string()), b.num_rows),
        "id_no": _text(b, id_no),
        "name": _text(b, name),
        "sex": _text(b, sex),
        "birth_date": _text(b, birth),
        "phone": _text(b, phone),
    }


def _filled(col: pa.ChunkedArray | pa.Array | None, n: int) -> pa.ChunkedArray | pa.Array:
    return pa.nulls(n, pa.string()) if col is None else col


def _valid_ids(ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pa.array(is_valid_resident_id(ids, ANY_NIGHT))


def _with_id_facts(cols: dict, n: int) -> None:
    """Keep only valid IDs; a valid ID fills a missing birth date and sex (legal reps, owners)."""
    ids = _filled(cols["id_no"], n)
    valid = _valid_ids(ids)
    ids = pc.if_else(valid, ids, pa.scalar(None, pa.string()))
    cols["id_no"] = ids
    birth, sex_given = cols["birth_date"], cols["sex"]
    if birth is not None and sex_given is not None and not birth.null_count + sex_given.null_count:
        return  # the registers carry both: nothing to fill
    from_id = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(ids, 6, 10),
        pc.utf8_slice_codeunits(ids, 10, 12),
        pc.utf8_slice_codeunits(ids, 12, 14),
        "-",
    )
    cols["birth_date"] = pc.coalesce(_filled(cols["birth_date"], n), from_id)
    odd = pc.is_in(pc.utf8_slice_codeunits(ids, 16, 17), pa.array(list("13579")))
    sex = pc.if_else(pc.is_null(ids), pa.scalar(None, pa.string()), pc.if_else(odd, "男", "女"))
    cols["sex"] = pc.coalesce(_filled(cols["sex"], n), sex)


def _district_of(address: pa.ChunkedArray) -> pa.Array:
    found = pc.struct_field(pc.extract_regex(address, _DISTRICT_PATTERN), [0])
    return pc.take(_DISTRICT_CODES, pc.index_in(found, _DISTRICT_NAMES))


def _with_keys(table: pa.Table) -> pa.Table:
    """Append the comparison keys (:func:`etl.matching.comparison_keys`) as ``k_*`` columns."""
    frame = table.select(["name", "birth_date", "phone", "district", "sex"]).to_pandas()
    keys = comparison_keys(frame)
    codes, names = pd.factorize(keys["name"], use_na_sentinel=True)
    pinyin, surname = name_pinyin(pd.Series(names, dtype="str"))
    per_row = pa.array(codes, mask=codes < 0)  # pinyin per distinct name, spread in Arrow
    spread = {
        col: pc.take(pa.array(values, pa.string(), from_pandas=True), per_row)
        for col, values in (("pinyin", pinyin), ("surname", surname))
    }
    names = ["name", "pinyin", "surname", "birth", "phone", "district", "sex"]
    for col, key in zip(KEY_COLUMNS, names, strict=True):
        values = spread[key] if key in spread else pa.array(keys[key], pa.string())
        table = table.append_column(col, values)
    birth, phone = table.column("k_birth"), table.column("k_phone")
    table = table.append_column("k_birth_year", pc.utf8_slice_codeunits(birth, 0, 4))
    return table.append_column("k_phone_tail", pc.utf8_slice_codeunits(phone, -4))


# --- resolution (in the workspace) -------------------------------------------------------


@dataclass(frozen=True)
class FrozenModel:
    """The matcher as estimated on a rebuild night, kept for the nights after it.

    An incremental night re-resolves only the mentions its changes touch; with weights or
    name frequencies re-estimated every night, a shifted weight would change links nobody
    compares again (docs/decisions/0023). So the incremental nights, and a rebuild that must
    equal them, all score with the weights, threshold and name shares of one night.
    """

    model: MatchModel
    name_tf: pa.Table  # k_name, name_tf: each normalised name's share of the mentions
    rows: int  # the mentions it was estimated on (a name it never saw counts as one of them)
    estimated_on: date | None = None

    def describe(self) -> dict:
        m = self.model
        return {"threshold": m.threshold, "m": m.m, "u": m.u, "rows": self.rows}

    @classmethod
    def of(cls, described: dict, name_tf: pa.Table, estimated_on: date | None) -> FrozenModel:
        m = {f: tuple(v) for f, v in described["m"].items()}
        u = {f: tuple(v) for f, v in described["u"].items()}
        weights = {f: np.log2(np.asarray(m[f]) / np.asarray(u[f])) for f in m}
        model = MatchModel(weights, float(described["threshold"]), m, u)
        return cls(model, name_tf, int(described["rows"]), estimated_on)


@dataclass(frozen=True)
class PersonResolution:
    """How the mentions in ``person_assigned`` were linked, and what matching cost."""

    candidates: Candidates
    model: MatchModel
    conflicting_id_clusters: int  # clusters holding two different valid IDs (must be 0)
    seconds: dict[str, float]  # wall time of each part, for the night's figures
    frozen: FrozenModel  # the model it scored with (estimated tonight, or the kept one)


def resolve_persons(
    ws: Workspace, seed: int = 0, frozen: FrozenModel | None = None
) -> PersonResolution:
    """Link the workspace's ``person_mention`` rows into ``person_assigned`` (anchor per row).

    A valid ID is its own anchor. ID-less rows (probes) are compared with every row that
    shares a blocking key with them; each probe links to its best partner above the
    threshold, and the probes' link graph decides their anchor: the ID it reaches, else its
    smallest member. The model's ``m`` comes from rows sharing a valid ID, ``u`` from
    random pairs — both samples of 200,000 pairs, so their cost does not grow with the night
    — unless a ``frozen`` model is given (an incremental night's rebuild), whose weights and
    name shares are used as they are. ``person_link`` keeps each probe's link.
    """
    clock = Stopwatch()
    n = ws.scalar("SELECT count(*) FROM person_mention")
    key_views(ws, None if frozen is None else frozen.name_tf)
    cands = blocking_candidates(ws)
    clock.lap("blocking")
    probes = ws.frame("SELECT row FROM person_mention WHERE id_no IS NULL")["row"].to_numpy()
    if frozen is None:
        m_left, m_right = _same_id_pairs(ws)
        rng = np.random.default_rng(seed)
        u_left = rng.integers(0, max(n, 1), 200_000)
        u_right = rng.integers(0, max(n, 1), 200_000)
        keep = u_left != u_right
        u_left, u_right = u_left[keep], u_right[keep]
    else:
        m_left = m_right = u_left = u_right = np.zeros(0, dtype=np.int64)
    rows = np.unique(
        np.concatenate([cands.left, cands.right, m_left, m_right, u_left, u_right, probes])
    )
    keys = keys_of(ws, rows, n if frozen is None else frozen.rows)
    clock.lap("keys")

    def at(r: np.ndarray) -> np.ndarray:  # row number → position in ``keys``
        return np.searchsorted(rows, r)

    if frozen is None:
        u = (
            DEFAULT_U
            if n < MIN_ROWS_TO_MEASURE_U
            else random_pair_shares(keys, at(u_left), at(u_right))
        )
        model = match_model(_m_shares(keys, at(m_left), at(m_right)), u, n)
        name_tf = ws.arrow("SELECT k_name, name_tf FROM person_name ORDER BY k_name")
        frozen = FrozenModel(model, name_tf, n)
    clock.lap("model")
    links = probe_links(keys, at(cands.left), at(cands.right), frozen.model, at(probes))
    clock.lap("scoring")
    conflicts = _assign_probes(ws, keys, rows, probes, links, frozen.model)
    clock.lap("clusters")
    return PersonResolution(cands, frozen.model, conflicts, clock.laps, frozen)


def probe_links(
    keys: pd.DataFrame,
    left: np.ndarray,
    right: np.ndarray,
    model: MatchModel,
    probes: np.ndarray,
) -> pd.DataFrame:
    """Each probe's best partner above the threshold, as positions in ``keys``.

    Equal weights go to the partner whose crosswalk key (``member``) is smallest, not to
    the one read first: an incremental night numbers its rows differently from a rebuild,
    and both must link alike (:func:`etl.matching.best_links` breaks ties by position).
    """
    weights = scored_pairs(keys, left, right, model, keys["name_tf"].to_numpy()[left])
    rank = np.argsort(np.argsort(keys["member"].to_numpy(), kind="stable"), kind="stable")
    by_rank = np.empty(len(rank), dtype=np.int64)
    by_rank[rank] = np.arange(len(rank))
    links = best_links(rank[left], rank[right], weights, model.threshold)
    links["row"] = by_rank[links["row"].to_numpy()]
    links["partner"] = by_rank[links["partner"].to_numpy()]
    is_probe = np.zeros(len(keys), dtype=bool)
    is_probe[probes] = True
    return links[is_probe[links["row"].to_numpy()]].reset_index(drop=True)


def key_views(ws: Workspace, name_tf: pa.Table | None = None) -> None:
    """``person_name`` (each normalised name's share of rows, or the kept ``name_tf``) and
    the ``person_key`` view.

    ``person_key`` names the mention's keys as :data:`etl.matching.BLOCKING_RULES` call
    them, for blocking (the comparisons take theirs in :func:`keys_of`).
    """
    if name_tf is not None:
        ws.load("person_name", name_tf)
    else:
        ws.execute("""
            CREATE OR REPLACE TABLE person_name AS
            SELECT k_name, count(*) / (SELECT count(*) FROM person_mention) AS name_tf
            FROM person_mention WHERE k_name IS NOT NULL GROUP BY k_name
        """)
    ws.execute(f"""
        CREATE OR REPLACE VIEW person_key AS
        SELECT row, id_no IS NULL AS probe, {KEY_SELECT}
        FROM person_mention
    """)


# a mention's keys as the blocking rules name them (``person_key`` and the incremental night)
KEY_SELECT = """k_name AS name, k_pinyin AS pinyin, k_surname AS surname, k_birth AS birth,
    k_birth_year AS birth_year, k_phone AS phone, k_phone_tail AS phone_tail,
    k_district AS district, k_sex AS sex"""


def blocking_candidates(
    ws: Workspace, probe_keys: str = "(SELECT * FROM person_key WHERE probe)"
) -> Candidates:
    """Pairs (probe, row) sharing a blocking key (:data:`BLOCKING_RULES`), each pair once.

    Per rule: the rows whose key some probe has (a semi-join against a few thousand probe
    keys, not a group-by of every row), then one hash join inside those blocks. A block of
    more than :data:`MAX_BLOCK` rows is not selective and is skipped (and counted), as
    :func:`etl.matching.candidate_pairs` does. ``probe_keys``: where the probes' keys are read
    (the incremental night keeps them apart, rather than scan every row for them).
    """
    parts, per_rule, skipped = [], {}, 0
    for rule, cols in BLOCKING_RULES.items():
        on = " AND ".join(f"l.{c} = r.{c}" for c in cols)
        present = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        keys = ", ".join(cols)
        ws.execute(f"""
            CREATE OR REPLACE TEMP TABLE block_member AS
            WITH probe_key AS (SELECT DISTINCT {keys} FROM {probe_keys} WHERE {present})
            SELECT k.row, k.probe, {", ".join(f"k.{c}" for c in cols)}
            FROM person_key k SEMI JOIN probe_key p ON {on.replace("l.", "k.").replace("r.", "p.")};
            CREATE OR REPLACE TEMP TABLE block_size AS
            SELECT {keys}, count(*) AS size FROM block_member GROUP BY ALL;
        """)
        skipped += ws.scalar(f"SELECT count(*) FROM block_size WHERE size > {MAX_BLOCK}")
        pairs = ws.arrow(f"""
            WITH l AS (
                SELECT m.* FROM block_member m JOIN block_size b USING ({keys})
                WHERE m.probe AND b.size <= {MAX_BLOCK}
            )
            SELECT l.row AS i, r.row AS j FROM l JOIN block_member r ON {on}
            WHERE l.row <> r.row AND (NOT r.probe OR l.row < r.row)
        """)
        per_rule[rule] = pairs.num_rows
        parts.append(pairs)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(empty, empty, per_rule, skipped)
    both = pa.concat_tables(parts)
    i = both.column("i").to_numpy().astype(np.int64)
    j = both.column("j").to_numpy().astype(np.int64)
    n = max(int(ws.scalar("SELECT coalesce(max(row), 0) + 1 FROM person_key")), 1)
    pair = np.unique(i * n + j)
    return Candidates(pair // n, pair % n, per_rule, skipped)


def _same_id_pairs(ws: Workspace, limit: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows known to be one person (the first row of an ID with each later one).

    Over a hash sample of about a million rows' IDs: ``limit`` pairs need no more, and the
    group-by then costs the same at any scale.
    """
    n = ws.scalar("SELECT count(*) FROM person_mention")
    every = max(1, n // 1_000_000)
    pairs = ws.frame(f"""
        WITH s AS (
            SELECT row, id_no FROM person_mention
            WHERE id_no IS NOT NULL AND hash(id_no) % {every} = 0
        ), f AS (SELECT id_no, min(row) AS first FROM s GROUP BY id_no)
        SELECT f.first AS i, s.row AS j FROM s JOIN f USING (id_no)
        WHERE s.row <> f.first ORDER BY s.row LIMIT {limit}
    """)
    return pairs["i"].to_numpy(np.int64), pairs["j"].to_numpy(np.int64)


def keys_of(ws: Workspace, rows: np.ndarray, total: int) -> pd.DataFrame:
    """The comparison keys of the given rows, in row order, named as
    :func:`etl.matching.comparison_levels` calls them, with ``id_no`` and ``member`` (the
    crosswalk key ``dataset|source_key|role``): taken from the spilled mentions by row
    number (a join and sort in SQL cost twice as much). A name ``person_name`` does not
    know (a kept model's) counts as one of ``total`` mentions."""
    cols = [*KEY_COLUMNS, "id_no", "dataset", "source_key", "role"]
    taken = ws.take("person_mention", cols, rows)
    keys = pd.DataFrame({"row": rows})
    for col in KEY_COLUMNS:
        keys[col.removeprefix("k_")] = taken.column(col).to_pandas().astype("str")
    keys["birth_year"] = keys["birth"].str.slice(0, 4)
    keys["id_no"] = taken.column("id_no").to_pandas().astype("str")
    member = pc.binary_join_element_wise(*(taken.column(c) for c in cols[-3:]), "|")
    keys["member"] = member.to_pandas().astype("str")
    tf = ws.frame("SELECT k_name, name_tf FROM person_name")
    shares = pd.Series(tf["name_tf"].to_numpy(), index=tf["k_name"])
    keys["name_tf"] = keys["name"].map(shares).fillna(1 / max(total, 1)).to_numpy()
    return keys


def _m_shares(keys: pd.DataFrame, left: np.ndarray, right: np.ndarray) -> dict:
    same = pd.Series(np.r_[np.arange(len(left)), np.arange(len(left))])
    both = keys.iloc[np.r_[left, right]].reset_index(drop=True)
    return m_probabilities(both, same)


@dataclass(frozen=True)
class Components:
    """Who goes with whom among some mentions: each one's anchor; each probe's rule, score."""

    anchor: np.ndarray  # per mention (object): its valid ID, or ``row:`` + smallest member
    probe_rule: np.ndarray  # per probe: probabilistic / unmatched
    probe_score: np.ndarray  # per probe: the best link's match probability (NaN unmatched)
    id_merged: pd.DataFrame  # id_no → anchor, for valid IDs that probes joined to another
    conflicts: int


def components(
    ids: pd.Series, members: pd.Series, probes: np.ndarray, links: pd.DataFrame, threshold: float
) -> Components:
    """Connected components of mentions (positions) under same-ID edges and probe links.

    A component's anchor is its smallest valid ID, else its smallest member: nothing
    depends on the order the mentions were read in, so a rebuild and an incremental night
    that re-resolves a part of the mentions give the same anchors.
    """
    k = len(ids)
    id_group = ids.groupby(ids, dropna=True).ngroup().fillna(-1).to_numpy(np.int64)
    first = pd.Series(np.arange(k)).groupby(id_group).transform("first").to_numpy()
    same = (id_group >= 0) & (first != np.arange(k))
    left = np.r_[np.flatnonzero(same), links["row"].to_numpy()]
    right = np.r_[first[same], links["partner"].to_numpy()]
    comp = cluster_labels(k, left, right)
    frame = pd.DataFrame({"comp": comp, "id_no": ids.to_numpy(), "member": members.to_numpy()})
    ids_per_comp = frame.dropna(subset=["id_no"]).groupby("comp")["id_no"]
    comp_id = ids_per_comp.min()
    row_anchor = frame.sort_values("member").drop_duplicates("comp").set_index("comp")["member"]
    anchor = frame["comp"].map(comp_id).fillna("row:" + frame["comp"].map(row_anchor))
    conflicting = ids_per_comp.nunique()
    conflicting = conflicting[conflicting > 1]
    weight = links["weight"].to_numpy()
    linked_weight = pd.concat(
        [
            pd.Series(weight, index=links["row"].to_numpy()),
            pd.Series(weight, index=links["partner"].to_numpy()),
        ]
    )
    best = linked_weight.groupby(level=0).max().reindex(probes).to_numpy()
    size = frame.groupby("comp")["comp"].transform("size").to_numpy()
    has_id = frame["comp"].isin(comp_id.index).to_numpy()
    grouped = (size[probes] > 1) | has_id[probes]
    # two valid IDs that probes joined: every row of both goes to the smallest one's anchor
    in_conflict = frame[frame["comp"].isin(conflicting.index)].dropna(subset=["id_no"])
    merged = pd.DataFrame(
        {
            "id_no": in_conflict["id_no"].astype("str"),
            "anchor": in_conflict["comp"].map(comp_id).astype("str"),
        }
    ).drop_duplicates("id_no")
    return Components(
        anchor.to_numpy(dtype=object),
        np.where(grouped, "probabilistic", "unmatched"),
        np.where(grouped, weight_to_score(best, threshold), np.nan),
        merged,
        int(len(conflicting)),
    )


def links_by_row(links: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Links found between positions in ``rows`` (:func:`probe_links`), by row number."""
    return pd.DataFrame(
        {
            "row": rows[links["row"].to_numpy()],
            "partner": rows[links["partner"].to_numpy()],
            "weight": links["weight"].to_numpy(),
        }
    )


def _assign_probes(
    ws: Workspace,
    keys: pd.DataFrame,
    rows: np.ndarray,
    probes: np.ndarray,
    links: pd.DataFrame,
    model: MatchModel,
) -> int:
    """``person_assigned``: every mention's anchor, match rule and score (SQL over the night),
    and ``person_link``: each probe's link, by row number."""
    p = np.searchsorted(rows, probes)
    found = components(keys["id_no"], keys["member"], p, links, model.threshold)
    ws.load(
        "probe_assigned",
        pd.DataFrame(
            {
                "row": probes,
                "anchor": found.anchor[p],
                "match_rule": found.probe_rule,
                "match_score": found.probe_score,
            }
        ),
    )
    ws.load("id_merged", found.id_merged)
    ws.load("person_link", links_by_row(links, rows))
    ws.execute("""
        CREATE OR REPLACE VIEW person_assigned AS
        SELECT p.*, coalesce(a.anchor, x.anchor, p.id_no) AS anchor,
               CASE WHEN p.id_no IS NULL THEN a.match_rule ELSE 'exact_id' END AS match_rule,
               CASE WHEN p.id_no IS NULL THEN a.match_score ELSE 1.0 END AS match_score
        FROM person_mention p
        LEFT JOIN probe_assigned a USING (row)
        LEFT JOIN id_merged x USING (id_no)
    """)
    return found.conflicts


# --- survivorship ------------------------------------------------------------------------


def _rank_case() -> str:
    whens = " ".join(f"WHEN '{d}' THEN {r}" for d, r in SOURCE_RANK.items())
    return f"CASE dataset {whens} ELSE 9 END"


# One sortable HUGEINT per row for "first non-null in this order" (``arg_min``: a hash
# aggregate, several times cheaper than ordered aggregates): source rank (4 bits), then the
# newest update (seconds, 32 bits, counted down), then a hash of the mention's crosswalk key
# (64 bits), so that ties resolve the same way however the mentions were numbered (an
# incremental night numbers them differently from a rebuild).
_NEWEST_FIRST = "((4294967295 - coalesce(epoch(updated_at), 0)::BIGINT)::HUGEINT << 64)"
_MEMBER_HASH = "hash(dataset, source_key, role)::HUGEINT"
BY_RANK = f"((rank::HUGEINT << 96) | {_NEWEST_FIRST} | {_MEMBER_HASH})"
BY_TIME = f"({_NEWEST_FIRST} | {_MEMBER_HASH})"
# each surviving field: the column, and the order its first non-null value is taken in
SURVIVING = {
    "name": BY_RANK,
    "sex": BY_RANK,
    "birth_date": BY_RANK,
    "phone": BY_TIME,
    "address": BY_TIME,
    "district": BY_TIME,
}


def number_ids(ws: Workspace, ids_table: str) -> pd.DataFrame:
    """``person_number``: each person's anchor and id (from ``ids_table``) and ``k``, its
    place in id order (the person table's order); returned as a frame of anchor and k."""
    ws.execute(f"""
        CREATE OR REPLACE TEMP TABLE person_number AS
        SELECT anchor, id,  -- P0000000042: the number sorts faster than the text
               (row_number() OVER (ORDER BY CAST(substr(id, 2) AS BIGINT)) - 1)::INTEGER AS k
        FROM {ids_table}
    """)
    return ws.frame("SELECT anchor, k FROM person_number")


def unified_persons(
    ws: Workspace,
    person_at: np.ndarray,
    rows: np.ndarray | None = None,
    mentions: str = "person_mention",
) -> pa.Table:
    """One row per person by :data:`SURVIVORSHIP`, with its sources and last update.

    ``person_at`` is each mention's person by row (its place ``k`` in ``person_number``, in
    id order): SQL groups the night's mentions by that integer keeping only numbers — for
    each field the row that wins it (``arg_min`` of a packed key), the dataset bits,
    counts — so the group-by of 7.5 million rows holds no strings, and its result in ``k``
    order is the table in id order; the winning values are then taken from the mention
    columns by row number, one column at a time. ``rows``: the mentions ``person_at`` is of
    (an incremental night's re-resolved few, in the table ``mentions``), else every row in
    order.
    """
    datasets = sorted(ws.frame(f"SELECT DISTINCT dataset FROM {mentions}")["dataset"])
    bits = {d: 1 << i for i, d in enumerate(datasets)}
    bit_case = " ".join(f"WHEN '{d}' THEN {b}" for d, b in bits.items())
    names = ", ".join(f"('{d}', {b})" for d, b in bits.items()) or "(NULL, 0)"
    winners = ",\n".join(
        f"arg_min(row, {order}) FILTER (WHERE filled & {1 << i} <> 0) AS {col}_row"
        for i, (col, order) in enumerate(SURVIVING.items())
    )
    if rows is None:
        rows = np.arange(len(person_at), dtype=np.int64)
    ws.load("person_at", pa.table({"row": rows, "k": pa.array(person_at, pa.int32())}))
    per = ws.arrow(f"""
        WITH m AS (
            SELECT a.k, p.row, p.updated_at, p.filled, p.dataset, p.source_key, p.role,
                   {_rank_case()} AS rank, CASE p.dataset {bit_case} ELSE 0 END AS bit
            FROM {mentions} p JOIN person_at a USING (row)
        ), per AS (
            SELECT k, {winners}, bit_or(bit) AS mask, count(*) AS records,
                   max(updated_at) AS last_updated_at
            FROM m GROUP BY k
        ), dataset_bit(dataset, bit) AS (VALUES {names}
        ), source_text AS (
            SELECT mask, string_agg(d.dataset, ',' ORDER BY d.dataset) AS sources
            FROM (SELECT DISTINCT mask FROM per) JOIN dataset_bit d ON (mask & d.bit) <> 0
            GROUP BY mask
        )
        SELECT per.*, s.sources FROM per JOIN source_text s USING (mask) ORDER BY k
    """)
    ws.execute("DROP TABLE person_at")
    person = ws.arrow("SELECT id, anchor FROM person_number ORDER BY k").take(per.column("k"))
    anchor = person.column("anchor")
    is_id = pc.invert(pc.starts_with(anchor, "row:"))  # a valid ID anchors its person
    out = {
        "person_id": person.column("id"),
        "id_no": pc.if_else(is_id, anchor, pa.scalar(None, pa.string())),
        "anchor": anchor,
    }
    sources = {}
    for col in SURVIVING:  # the winning row's value (and for name and phone, its source)
        sourced = col in ("name", "phone")
        columns = [col, "dataset"] if sourced else [col]
        taken = ws.take(mentions, columns, per[f"{col}_row"])
        out[col] = taken.column(col)
        if sourced:
            sources[f"{col}_source"] = taken.column("dataset")
    out.update(sources)  # after the values: the table's columns keep their order
    for col in ("sources", "records", "last_updated_at"):
        out[col] = per.column(col)
    out["has_valid_id"] = is_id
    return pa.table(out)
