"""Unified ids that stay put across nights: carried over by anchor or by crosswalk member.

A cluster's *anchor* is what makes it the same entity from night to night: the valid
resident ID or USCC it carries, else a legacy code, else its earliest source row. An id is
kept when (1) the anchor was seen before, else (2) most of the cluster's source rows
pointed to one id last night and no other cluster kept it; only then is a new number
issued (sorted by anchor, so a rerun issues the same numbers). Rows whose id changed
carry the old one in ``previous_id``: that is the merge/split history in the crosswalk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PreviousIds:
    """Last night's anchors and crosswalk, or nothing on the first night."""

    anchors: pd.DataFrame  # columns: anchor, id
    members: pd.DataFrame  # columns: member, id
    next_number: int = 1

    @classmethod
    def none(cls) -> PreviousIds:
        empty = pd.DataFrame({"anchor": pd.Series(dtype="str"), "id": pd.Series(dtype="str")})
        return cls(empty, empty.rename(columns={"anchor": "member"}), 1)


def id_number(ids: pd.Series, prefix: str) -> int:
    """The highest number already issued among ``ids`` (``P0000000042`` → 42)."""
    numbers = pd.to_numeric(ids.str.slice(len(prefix)), errors="coerce")
    return int(numbers.max()) if len(numbers) and numbers.notna().any() else 0


def stable_ids(
    cluster: np.ndarray, anchor: pd.Series, member: pd.Series, previous: PreviousIds, prefix: str
) -> tuple[pd.Series, pd.Series]:
    """An id per row (the cluster's) and the row's previous id where it changed (else null).

    ``cluster`` labels rows; ``anchor`` is the cluster's anchor on every row; ``member`` is
    the row's crosswalk key (``dataset|source_key|role``).
    """
    rows = pd.DataFrame({"cluster": cluster, "anchor": anchor.to_numpy(), "member": member})
    clusters = rows.drop_duplicates("cluster")[["cluster", "anchor"]]
    by_anchor = clusters.merge(previous.anchors, on="anchor", how="left")
    kept = by_anchor.dropna(subset=["id"]).drop_duplicates("id")
    assigned = dict(zip(kept["cluster"], kept["id"], strict=True))
    taken = set(kept["id"])

    claims = rows.merge(previous.members, on="member")
    claims = claims[~claims["cluster"].isin(assigned) & ~claims["id"].isin(taken)]
    votes = claims.groupby(["cluster", "id"], as_index=False).size()
    votes = votes.sort_values(["size", "id"], ascending=[False, True])
    votes = votes.drop_duplicates("id").drop_duplicates("cluster")
    assigned.update(zip(votes["cluster"], votes["id"], strict=True))

    fresh = clusters[~clusters["cluster"].isin(assigned)].sort_values("anchor")
    numbers = np.arange(previous.next_number, previous.next_number + len(fresh))
    fresh_ids = [f"{prefix}{k:010d}" for k in numbers]  # one string per new entity
    assigned.update(zip(fresh["cluster"], fresh_ids, strict=True))

    ids = rows["cluster"].map(assigned).astype("str")
    before = rows[["member"]].merge(previous.members, on="member", how="left")["id"]
    changed = before.notna() & (before.to_numpy() != ids.to_numpy())
    return ids, before.where(changed).astype("str")


def smallest_per_cluster(cluster: pd.Series, values: pd.Series) -> pd.Series:
    """The smallest non-null value per cluster (a sort, not a Python call per group)."""
    frame = pd.DataFrame({"cluster": cluster.to_numpy(), "value": values.to_numpy()}).dropna()
    frame = frame.sort_values(["cluster", "value"]).drop_duplicates("cluster")
    return frame.set_index("cluster")["value"]
