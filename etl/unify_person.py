"""Unified persons: every person a clean dataset mentions, one row per real person.

Pure functions (tables in, tables out; docs/architecture.md §5 unified zone):

- :func:`person_mentions` projects one clean batch of a dataset onto the common mention
  columns (who the row is about, and in which role);
- :func:`resolve_persons` links mentions: a valid resident ID links exactly; ID-less rows
  are matched by :mod:`etl.matching` against everyone (never two valid IDs together);
- :func:`unified_persons` applies survivorship (:data:`SURVIVORSHIP`) per person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from catalog.identifiers import JIANGMEN_DIVISIONS, is_valid_resident_id
from etl.matching import (
    Candidates,
    MatchModel,
    best_links,
    candidate_pairs,
    cluster_labels,
    comparison_levels,
    m_probabilities,
    match_model,
    pair_weights,
    person_match_keys,
    u_probabilities,
    weight_to_score,
)
from etl.unify_ids import PreviousIds, smallest_per_cluster, stable_ids

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
SUBJECT, LEGAL_REP, OWNER = "subject", "legal_rep", "owner"
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
_DISTRICT_BY_NAME = {name: code for code, name in JIANGMEN_DIVISIONS.items()}
_DISTRICT_PATTERN = "(" + "|".join(_DISTRICT_BY_NAME) + ")"


# Clean rows were judged against their own partition date by validation; here an ID is
# "valid" by its shape and check character, whatever night it arrived (so a rebuild from
# older partitions gives the same clusters).
ANY_NIGHT = date(2200, 1, 1)


def person_mentions(dataset_id: str, batch: pd.DataFrame) -> pd.DataFrame:
    """The persons one clean batch mentions, in :data:`MENTION_COLUMNS` (may be empty).

    Subjects: the register rows of population, insured persons, health records and the
    natural-person applicants of service cases (every such row, with or without an ID).
    Mentions inside enterprise records — the legal representative of a registration, the
    owner of an individual business taxed under ``ID + 00`` — are taken when they carry a
    valid ID (a name alone cannot tell two people apart).
    """
    b = batch
    if dataset_id == "gongan.population":
        out = _frame(b, "person_no", SUBJECT, "id_no", "name", "sex", "birth_date", None)
        out["district"] = b["division_code"].to_numpy()
        out["address"] = b["address"].to_numpy()
    elif dataset_id == "renshe.insured_person":
        out = _frame(b, "insured_no", SUBJECT, "id_no", "name", "sex", "birth_date", "phone")
    elif dataset_id == "weiji.health_record":
        out = _frame(b, "record_no", SUBJECT, "id_no", "name", "sex", "birth_date", "phone")
        out["address"] = b["address"].to_numpy()
        out["district"] = _district_of(b["address"]).to_numpy()
    elif dataset_id == "xingzheng.service_case":
        b = b[(b["applicant_type"] == "自然人").to_numpy()]
        out = _frame(
            b, "case_no", SUBJECT, "applicant_id_no", "applicant_name", None,
            "applicant_birth_date", "phone",
        )  # fmt: skip
        out["district"] = b["district_code"].to_numpy()
    elif dataset_id == "gongshang.enterprise_registration":
        b = b[is_valid_resident_id(b["legal_rep_id_no"].fillna("").to_numpy(dtype=str), ANY_NIGHT)]
        out = _frame(b, "reg_id", LEGAL_REP, "legal_rep_id_no", "legal_rep_name", None, None, None)
    elif dataset_id in ("guoshui.taxpayer", "dishui.taxpayer"):
        owner = owner_ids(b["tax_no"])
        b, owner = b[owner.notna().to_numpy()], owner.dropna()
        key = "tax_no" if dataset_id == "guoshui.taxpayer" else "taxpayer_id"
        phone = "phone" if "phone" in b else None
        out = _frame(b, key, OWNER, None, "legal_rep_name", None, None, phone)
        out["id_no"] = owner.to_numpy()
    else:
        return no_mentions(MENTION_COLUMNS)
    out["dataset"] = dataset_id
    out["updated_at"] = pd.to_datetime(b["updated_at"]).to_numpy().astype("datetime64[ms]")
    return out[MENTION_COLUMNS].reset_index(drop=True)


def no_mentions(columns: list[str]) -> pd.DataFrame:
    """An empty mention frame with the types a full one has (so concatenation keeps them)."""
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in columns})
    frame["updated_at"] = pd.Series(dtype="datetime64[ms]")
    return frame


def owner_ids(tax_no: pd.Series) -> pd.Series:
    """The owner's resident ID in an individual business's tax number (``ID + 00``), else null."""
    text = tax_no.astype("str")
    candidate = text.str.slice(0, 18).where(text.str.len() == 20)
    valid = is_valid_resident_id(candidate.fillna("").to_numpy(dtype=str), ANY_NIGHT)
    return candidate.where(valid)


def _frame(
    b: pd.DataFrame,
    key: str,
    role: str,
    id_no: str | None,
    name: str,
    sex: str | None,
    birth: str | None,
    phone: str | None,
) -> pd.DataFrame:
    def col(name: str | None) -> np.ndarray:
        return b[name].to_numpy(dtype=object) if name else np.full(len(b), None, dtype=object)

    out = pd.DataFrame(
        {
            "source_key": col(key),
            "id_no": col(id_no),
            "name": col(name),
            "sex": col(sex),
            "birth_date": col(birth),
            "phone": col(phone),
            "district": col(None),
            "address": col(None),
        }
    )
    out["birth_date"] = out["birth_date"].map(_iso, na_action="ignore")
    out["role"] = role
    return out


def _iso(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _district_of(address: pd.Series) -> pd.Series:
    return address.astype("str").str.extract(_DISTRICT_PATTERN)[0].map(_DISTRICT_BY_NAME)


@dataclass(frozen=True)
class PersonResolution:
    """Every mention with its person, how it was linked, and what matching cost."""

    mentions: pd.DataFrame  # MENTION_COLUMNS + cluster, anchor, match_rule, match_score
    candidates: Candidates
    model: MatchModel
    conflicting_id_clusters: int  # clusters holding two different valid IDs (must be 0)


def resolve_persons(mentions: pd.DataFrame, seed: int = 0) -> PersonResolution:
    """Link mentions into persons: exact on valid IDs, probabilistic for the ID-less."""
    m = mentions.reset_index(drop=True).copy()
    ids = m["id_no"].fillna("").astype(str).to_numpy()
    valid = is_valid_resident_id(ids, ANY_NIGHT)
    m["id_no"] = m["id_no"].where(valid)
    _birth_and_sex_from_id(m, valid)
    keys = person_match_keys(m)
    probe = ~valid
    cands = candidate_pairs(keys, probe)
    model = match_model(
        m_probabilities(keys, m["id_no"]),
        u_probabilities(keys, np.random.default_rng(seed)),
        len(keys),
    )
    levels = comparison_levels(keys, cands.left, cands.right)
    weights = pair_weights(levels, model, keys["name_tf"].to_numpy()[cands.left])
    links = best_links(cands.left, cands.right, weights, model.threshold)
    links = links[probe[links["row"].to_numpy()]]  # only ID-less rows link out

    n = len(m)
    id_group = m.groupby("id_no", dropna=True).ngroup().fillna(-1).to_numpy(dtype=np.int64)
    first_of_id = pd.Series(np.arange(n)).groupby(id_group).transform("first").to_numpy()
    same_id = valid & (first_of_id != np.arange(n))
    left = np.concatenate([np.flatnonzero(same_id), links["row"].to_numpy()])
    right = np.concatenate([first_of_id[same_id], links["partner"].to_numpy()])
    m["cluster"] = cluster_labels(n, left, right)

    m["member"] = m["dataset"] + "|" + m["source_key"].astype(str) + "|" + m["role"]
    ids_per_cluster = m.dropna(subset=["id_no"]).groupby("cluster")["id_no"].nunique()
    anchor_id = m.dropna(subset=["id_no"]).groupby("cluster")["id_no"].first()
    anchor_row = smallest_per_cluster(m["cluster"], m["member"])
    m["anchor"] = m["cluster"].map(anchor_id).fillna("row:" + m["cluster"].map(anchor_row))

    linked_weight = pd.concat(
        [
            pd.Series(links["weight"].to_numpy(), index=links["row"].to_numpy()),
            pd.Series(links["weight"].to_numpy(), index=links["partner"].to_numpy()),
        ]
    )
    best = linked_weight.groupby(level=0).max().reindex(np.arange(n)).to_numpy()
    size = m.groupby("cluster")["cluster"].transform("size").to_numpy()
    m["match_rule"] = np.where(valid, "exact_id", np.where(size > 1, "probabilistic", "unmatched"))
    m["match_score"] = np.where(
        valid, 1.0, np.where(size > 1, weight_to_score(best, model.threshold), np.nan)
    )
    return PersonResolution(m, cands, model, int((ids_per_cluster > 1).sum()))


def _birth_and_sex_from_id(m: pd.DataFrame, valid: np.ndarray) -> None:
    """Mentions with a valid ID but no birth date/sex (legal reps, owners) read them from it."""
    ids = m["id_no"].astype("str")
    from_id = ids.str.slice(6, 10) + "-" + ids.str.slice(10, 12) + "-" + ids.str.slice(12, 14)
    m["birth_date"] = m["birth_date"].where(m["birth_date"].notna() | ~valid, from_id)
    odd = pd.to_numeric(ids.str.slice(16, 17), errors="coerce") % 2 == 1
    m["sex"] = m["sex"].where(m["sex"].notna() | ~valid, np.where(odd, "男", "女"))


def assign_person_ids(
    resolution: PersonResolution, previous: PreviousIds
) -> tuple[pd.Series, pd.Series]:
    """Stable person ids per mention and the previous id where it changed."""
    m = resolution.mentions
    return stable_ids(m["cluster"].to_numpy(), m["anchor"], m["member"], previous, PERSON_PREFIX)


def unified_persons(m: pd.DataFrame) -> pd.DataFrame:
    """One row per person (``m`` has ``cluster`` and ``person_id``), fields by :data:`SURVIVORSHIP`.

    Every row says which datasets fed it, where its name and phone came from, and when any
    of its records was last updated. Groups by the integer cluster, not the id string.
    """
    m = m.assign(rank=m["dataset"].map(SOURCE_RANK).fillna(9))
    by_rank = m.sort_values(["cluster", "rank", "updated_at"], ascending=[True, True, False])
    by_time = m.sort_values(["cluster", "updated_at"], ascending=[True, False])
    identity = by_rank.groupby("cluster", sort=True)[["name", "sex", "birth_date"]].first()
    contact = by_time.groupby("cluster", sort=True)[["phone", "address", "district"]].first()
    groups = m.groupby("cluster", sort=True)
    out = pd.concat([identity, contact], axis=1)
    out.insert(0, "person_id", groups["person_id"].first())
    out.insert(1, "id_no", groups["id_no"].first())
    out.insert(2, "anchor", groups["anchor"].first())
    out["name_source"] = _source_of(by_rank, "name")
    out["phone_source"] = _source_of(by_time, "phone")
    out["sources"] = sources_per_entity(m, "cluster")
    out["records"] = groups.size()
    out["last_updated_at"] = groups["updated_at"].max()
    out["has_valid_id"] = out["id_no"].notna()
    return out.sort_values("person_id").reset_index(drop=True)


def _source_of(ordered: pd.DataFrame, column: str) -> pd.Series:
    """The dataset whose value of ``column`` won (first non-null in the given order)."""
    has = ordered.dropna(subset=[column])
    return has.groupby("cluster", sort=True)["dataset"].first()


def sources_per_entity(m: pd.DataFrame, entity: str) -> pd.Series:
    """``dataset,dataset`` per entity, sorted: a bit per dataset, summed, then looked up."""
    names = sorted(m["dataset"].unique())
    bit = m["dataset"].map({d: 1 << i for i, d in enumerate(names)})
    pairs = pd.DataFrame({entity: m[entity], "bit": bit}).drop_duplicates()
    masks = pairs.groupby(entity, sort=True)["bit"].sum()
    text = {k: ",".join(d for i, d in enumerate(names) if k >> i & 1) for k in masks.unique()}
    return masks.map(text)
