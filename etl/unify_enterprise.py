"""Unified enterprises, keyed by USCC, with legacy records linked through their codes.

Pure functions (docs/architecture.md §4, §5):

- :func:`enterprise_mentions` projects a clean batch onto the common mention columns,
  deriving the codes every record carries: the 9-character organisation code (inside a
  USCC at 9–17, a 15-character tax number at 7–15, or the org-code record itself), the
  15-digit business registration number, the owner's ID of an individual business taxed
  under ``ID + 00``;
- :func:`resolve_enterprises` links them: same organisation code, same registration
  number, owner's ID to the owner's registered individual business, then the normalised
  name for what is left; a record that links to nothing stays its own enterprise,
  flagged unlinked;
- :func:`unified_enterprises` applies survivorship (:data:`SURVIVORSHIP`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.matching import cluster_labels
from etl.unify_enterprise_fuzzy import (
    MIN_NAME,
    FuzzyFigures,
    any_per_group,
    core_similarity,
    fuzzy_links,
)
from etl.unify_person import SUBJECT, owner_ids

ENTERPRISE_PREFIX = "E"
MENTION_COLUMNS = [
    "dataset",
    "source_key",
    "uscc",
    "org_code",
    "reg_no",
    "owner_id",
    "individual",
    "name",
    "name_norm",
    "address",
    "division",
    "legal_rep_id_no",
    "legal_rep_name",
    "status",
    "updated_at",
]
SOURCE_RANK = {
    "gongshang.enterprise_registration": 0,  # the register of record
    "guoshui.taxpayer": 1,
    "dishui.taxpayer": 2,
    "zhijian.org_code": 3,
    "xingzheng.service_case": 4,
}
SURVIVORSHIP = {
    "name": "source rank (registration first, then national tax, local tax, org codes)",
    "status": "source rank (registration first)",
    "address": "most recent update",
    "legal_rep_person_id": "registration's legal representative, else the owner's ID + 00",
}
RULES = ("exact_uscc", "legacy_code", "exact_reg_no", "owner_id", "fuzzy_name", "unlinked")


def enterprise_mentions(dataset_id: str, batch: pd.DataFrame) -> pd.DataFrame:
    """The enterprises one clean batch is about, in :data:`MENTION_COLUMNS` (may be empty)."""
    b = batch
    n = len(b)
    none = pd.Series([None] * n, dtype="str", index=b.index)

    def text(name: str) -> pd.Series:  # Arrow-backed strings, positions as in ``out``
        column = b.get(name, none)  # an optional column may be absent
        return column.astype("str").reset_index(drop=True)

    if dataset_id == "gongshang.enterprise_registration":
        out = _frame(b, "reg_id", b["uscc"], none, b["reg_no"], none, "name")
        out["individual"] = (b["ent_type"] == "个体工商户").to_numpy()
        out["address"] = text("address")
        out["legal_rep_id_no"] = text("legal_rep_id_no")
        out["legal_rep_name"] = text("legal_rep_name")
        out["division"] = text("division_code")
        out["status"] = text("status")
    elif dataset_id == "zhijian.org_code":
        out = _frame(b, "org_code", none, b["org_code"], none, none, "name")
        out["individual"] = (b["org_type"] == "个体工商户").to_numpy()
        out["address"] = text("address")
        out["legal_rep_name"] = text("legal_rep_name")
    elif dataset_id in ("guoshui.taxpayer", "dishui.taxpayer"):
        tax = b["tax_no"].astype("str")
        uscc = tax.where(tax.str.len() == 18)
        org = tax.str.slice(6, 15).where(tax.str.len() == 15)
        owner = owner_ids(tax)
        key = "tax_no" if dataset_id == "guoshui.taxpayer" else "taxpayer_id"
        out = _frame(b, key, uscc, org, none, tax.where(owner.notna()), "taxpayer_name")
        out["individual"] = owner.notna().to_numpy()
        out["division"] = tax.str.slice(0, 6).where(tax.str.len() == 15).reset_index(drop=True)
        out["legal_rep_name"] = text("legal_rep_name")
        out["status"] = text("status")
    elif dataset_id == "xingzheng.service_case":
        b = b[(b["applicant_type"] != "自然人").to_numpy()]
        none = none[b.index]
        out = _frame(b, "case_no", b["applicant_id_no"], none, none, none, "applicant_name")
        out["individual"] = b["applicant_id_no"].astype("str").str.startswith("92").to_numpy()
    else:
        return no_enterprise_mentions()
    out["dataset"] = dataset_id
    out["updated_at"] = pd.to_datetime(b["updated_at"]).to_numpy().astype("datetime64[ms]")
    for col in MENTION_COLUMNS:
        if col not in out:
            out[col] = pd.Series([None] * len(out), dtype="str")
    out["org_code"] = out["org_code"].fillna(out["uscc"].str.slice(8, 17))
    out["division"] = out["division"].fillna(out["uscc"].str.slice(2, 8))
    return out[MENTION_COLUMNS].reset_index(drop=True)


def no_enterprise_mentions() -> pd.DataFrame:
    """An empty mention frame with the types a full one has (so concatenation keeps them)."""
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in MENTION_COLUMNS})
    frame["updated_at"] = pd.Series(dtype="datetime64[ms]")
    return frame


def _frame(
    b: pd.DataFrame,
    key: str,
    uscc: pd.Series,
    org: pd.Series,
    reg_no: pd.Series,
    owner: pd.Series,
    name: str,
) -> pd.DataFrame:
    from etl.zones import NORMALISED_SUFFIX

    norm = name + NORMALISED_SUFFIX

    def text(values: pd.Series) -> pd.Series:  # Arrow-backed strings: no Python objects
        return values.astype("str").reset_index(drop=True)

    return pd.DataFrame(
        {
            "source_key": text(b[key]),
            "uscc": text(uscc),
            "org_code": text(org),
            "reg_no": text(reg_no),
            "owner_id": text(owner),
            "name": text(b[name]),
            "name_norm": text(b[norm] if norm in b else b[name]),
        }
    )


@dataclass(frozen=True)
class EnterpriseResolution:
    mentions: pd.DataFrame  # MENTION_COLUMNS + cluster, anchor, linked, match_rule, match_score
    fuzzy: FuzzyFigures


def resolve_enterprises(mentions: pd.DataFrame) -> EnterpriseResolution:
    """Link enterprise mentions: codes first, owner IDs next, name and address last."""
    m = mentions.reset_index(drop=True)  # copy-on-write: new columns leave ``mentions`` alone
    n = len(m)
    edges: list[tuple[np.ndarray, np.ndarray]] = []
    for key in ("org_code", "uscc", "reg_no", "owner_id"):
        edges.append(_same_value_edges(m[key]))
    owner_left, owner_right = _owner_edges(m)
    edges.append((owner_left, owner_right))
    code_cluster = cluster_labels(n, *_joined(edges))
    fuzzy = fuzzy_links(m, code_cluster)
    m["cluster"] = cluster_labels(n, *_joined(edges + [(fuzzy.left, fuzzy.right)]))
    m["anchor"] = _anchors(m, m["cluster"].to_numpy())
    # linked = part of a registered enterprise (a USCC or a registration number)
    linked = (~m["anchor"].str.startswith(("row:", "org:"))).to_numpy()
    m["linked"] = linked

    in_code_group_with_uscc = any_per_group(m["uscc"].notna(), code_cluster)
    by_owner = np.zeros(n, dtype=bool)
    by_owner[owner_left] = True
    # every row of a code group that joined others by name and address carries its score
    group_score = np.full(code_cluster.max() + 1 if n else 0, np.nan)
    group_score[code_cluster[fuzzy.left]] = fuzzy.score
    fuzzy_score = group_score[code_cluster] if n else np.zeros(0)
    by_fuzzy = ~np.isnan(fuzzy_score)
    rule = np.select(
        [
            m["uscc"].notna().to_numpy(),
            m["reg_no"].notna().to_numpy(),
            m["org_code"].notna().to_numpy() & in_code_group_with_uscc,
            by_owner,
            by_fuzzy & linked,
            ~linked,
        ],
        ["exact_uscc", "exact_reg_no", "legacy_code", "owner_id", "fuzzy_name", "unlinked"],
        "legacy_code",
    )
    m["match_rule"] = rule
    # an unlinked row joined to other legacy records by name and address keeps that score
    by_name = by_fuzzy & np.isin(rule, ["fuzzy_name", "unlinked"])
    m["match_score"] = np.where(by_name, fuzzy_score, np.where(rule == "unlinked", np.nan, 1.0))
    return EnterpriseResolution(m, fuzzy.figures)


def _anchors(m: pd.DataFrame, cluster: np.ndarray) -> pd.Series:
    """Per row its cluster's anchor: the USCC most of its rows carry, else ``reg:`` the
    smallest registration number, ``org:`` the smallest org code, ``row:`` the first member.

    Each fallback looks only at the rows of clusters still without an anchor (a few %).
    """
    k = int(cluster.max()) + 1 if len(cluster) else 0
    anchor = np.full(k, None, dtype=object)
    code, usccs = pd.factorize(m["uscc"], sort=True)  # code order = USCC order
    has = code >= 0
    votes = pd.DataFrame({"cluster": cluster[has], "code": code[has]})
    votes = votes.groupby(["cluster", "code"], as_index=False).size()
    votes = votes.sort_values(["size", "code"], ascending=[False, True]).drop_duplicates("cluster")
    anchor[votes["cluster"].to_numpy()] = np.asarray(usccs, dtype=object)[votes["code"].to_numpy()]
    for prefix, column in (("reg:", "reg_no"), ("org:", "org_code"), ("row:", None)):
        rows = np.flatnonzero(pd.isna(anchor)[cluster])
        if not len(rows):
            break
        part = m.iloc[rows]
        values = (
            part["dataset"] + "|" + part["source_key"].astype("str") + "|" + SUBJECT
            if column is None
            else part[column]
        )
        smallest = pd.DataFrame({"cluster": cluster[rows], "value": values.to_numpy()}).dropna()
        smallest = smallest.sort_values(["cluster", "value"]).drop_duplicates("cluster")
        anchor[smallest["cluster"].to_numpy()] = prefix + smallest["value"].astype("str")
    return pd.Series(anchor[cluster], dtype="str")


def _joined(edges: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges])


def _same_value_edges(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Edges from each row to the first row with the same non-null value."""
    codes = pd.factorize(values)[0]  # -1 for null
    rows = np.flatnonzero(codes >= 0)
    _, first_of_code = np.unique(codes[rows], return_index=True)
    codes_of_rows = codes[rows]
    # np.unique yields the codes 0 … k-1 in order, each with the position of its first row
    return rows, rows[first_of_code][codes_of_rows]


def _owner_edges(m: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A tax record under ``ID + 00`` → the registered individual business of that owner.

    When the owner registered several businesses the names' cores must agree; an owner with
    one registered business links unless the names plainly differ (an owner may be taxed for
    a shop that is not on the register, under the same ID with another suffix).
    """
    taxed = m[m["owner_id"].notna()].assign(owner=lambda d: d["owner_id"].str.slice(0, 18))
    registered = m[
        (m["dataset"] == "gongshang.enterprise_registration")
        & m["individual"].fillna(False).astype(bool)
        & m["legal_rep_id_no"].notna()
    ]
    reg = registered.reset_index()[["index", "legal_rep_id_no", "name_norm"]]
    reg = reg.rename(columns={"legal_rep_id_no": "owner", "index": "to"})
    counts = reg.groupby("owner").size().rename("businesses")
    pairs = taxed.reset_index()[["index", "owner", "name_norm"]].merge(reg, on="owner")
    pairs = pairs.merge(counts, left_on="owner", right_index=True)
    same = (pairs["name_norm_x"] == pairs["name_norm_y"]).fillna(False).to_numpy()
    alike = np.ones(len(pairs))  # the same normalised name: nothing to compute
    alike[~same] = core_similarity(pairs["name_norm_x"][~same], pairs["name_norm_y"][~same])
    ok = np.where(pairs["businesses"] == 1, ~(alike < MIN_NAME), alike == 1.0)
    pairs = pairs[ok].drop_duplicates("index")
    return pairs["index"].to_numpy(), pairs["to"].to_numpy()


def unified_enterprises(m: pd.DataFrame, person_of_id: pd.Series) -> pd.DataFrame:
    """One row per enterprise (``m`` has ``cluster``, ``enterprise_id``), by :data:`SURVIVORSHIP`.

    ``person_of_id`` maps a valid resident ID to its unified person id (the legal
    representative's or owner's person).
    """
    cluster = m["cluster"].to_numpy()
    rank = m["dataset"].map(SOURCE_RANK).fillna(9).to_numpy()
    newest_first = -_update_order(m["updated_at"])
    by_rank = np.lexsort((newest_first, rank, cluster))  # sorts only row numbers
    by_time = np.lexsort((newest_first, cluster))
    columns = ["uscc", "org_code", "reg_no", "name", "name_norm", "status", "legal_rep_id_no"]
    out = pd.DataFrame({c: _first_valid(m[c], cluster, by_rank) for c in columns})
    out["address"] = _first_valid(m["address"], cluster, by_time)
    owner = _first_valid(m["owner_id"], cluster, by_rank)
    rep_id = out["legal_rep_id_no"].fillna(owner.str.slice(0, 18))
    out["legal_rep_person_id"] = rep_id.map(person_of_id)
    out = out.drop(columns=["legal_rep_id_no"])
    newest = by_time[_starts(cluster[by_time])]  # one row per cluster, its newest
    out.insert(0, "enterprise_id", m["enterprise_id"].to_numpy()[newest])
    out.insert(1, "anchor", m["anchor"].to_numpy()[newest])
    out["linked"] = m["linked"].to_numpy()[newest]
    individual = m["individual"].fillna(False).to_numpy(dtype=bool)
    out["individual"] = np.bincount(cluster, weights=individual, minlength=len(out)) > 0
    out["sources"] = sources_per_entity(m, "cluster")
    out["records"] = np.bincount(cluster, minlength=len(out))
    out["last_updated_at"] = m["updated_at"].to_numpy()[newest]
    return out.sort_values("enterprise_id").reset_index(drop=True)


def _update_order(updated_at: pd.Series) -> np.ndarray:
    """Update times as int64 for sorting, a missing one oldest of all."""
    t = updated_at.to_numpy(dtype="datetime64[ms]").astype(np.int64)
    return np.where(np.isnat(updated_at.to_numpy(dtype="datetime64[ms]")), -(2**62), t)


def _starts(sorted_clusters: np.ndarray) -> np.ndarray:
    """True where a run of equal cluster labels starts."""
    start = np.ones(len(sorted_clusters), dtype=bool)
    start[1:] = sorted_clusters[1:] != sorted_clusters[:-1]
    return start


def _first_valid(values: pd.Series, cluster: np.ndarray, order: np.ndarray) -> pd.Series:
    """Per cluster (0 … k-1) the first non-null value in the row order ``order``."""
    valid = order[values.notna().to_numpy()[order]]
    in_cluster = cluster[valid]
    first = _starts(in_cluster)
    k = int(cluster.max()) + 1 if len(cluster) else 0
    chosen = values.iloc[valid[first]].set_axis(in_cluster[first])
    return chosen.reindex(pd.RangeIndex(k, name="cluster"))


def sources_per_entity(m: pd.DataFrame, entity: str) -> pd.Series:
    """``dataset,dataset`` per entity, sorted: a bit per dataset, summed, then looked up."""
    names = sorted(m["dataset"].unique())
    bit = m["dataset"].map({d: 1 << i for i, d in enumerate(names)})
    pairs = pd.DataFrame({entity: m[entity], "bit": bit}).drop_duplicates()
    masks = pairs.groupby(entity, sort=True)["bit"].sum()
    text = {k: ",".join(d for i, d in enumerate(names) if k >> i & 1) for k in masks.unique()}
    return masks.map(text)
