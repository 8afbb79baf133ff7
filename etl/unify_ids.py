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

import pandas as pd

from etl.unify_workspace import Loadable, Workspace


@dataclass(frozen=True)
class PreviousIds:
    """Last night's anchors and crosswalk, or nothing on the first night."""

    anchors: Loadable  # columns: anchor, id (a frame, Arrow, or a stream of Arrow tables)
    members: Loadable  # columns: dataset, source_key, role, id (last night's crosswalk)
    next_number: int | None = None  # None: one past the highest among ``anchors``

    @classmethod
    def none(cls) -> PreviousIds:
        def empty(*columns: str) -> pd.DataFrame:
            return pd.DataFrame({c: pd.Series(dtype="str") for c in columns})

        return cls(empty("anchor", "id"), empty("dataset", "source_key", "role", "id"), 1)


def id_number(ids: pd.Series, prefix: str) -> int:
    """The highest number already issued among ``ids`` (``P0000000042`` → 42)."""
    numbers = pd.to_numeric(ids.str.slice(len(prefix)), errors="coerce")
    return int(numbers.max()) if len(numbers) and numbers.notna().any() else 0


def stable_ids(ws: Workspace, entity: str, previous: PreviousIds, prefix: str) -> None:
    """``{entity}_ids`` (anchor → id) and ``{entity}_id_before`` (row → previous id if changed).

    ``{entity}_assigned`` holds every row with its ``row``, ``anchor`` and crosswalk key
    (``dataset``, ``source_key``, ``role``). SQL in the workspace: at full scale this joins
    7.5 million crosswalk rows with last night's.
    """
    ws.load_spilled("prev_anchor", previous.anchors)
    ws.load_spilled("prev_member", previous.members)
    first_new = previous.next_number or next_number(ws, "prev_anchor", prefix)
    for statement in (
        f"""
        CREATE OR REPLACE TEMP TABLE cluster AS SELECT DISTINCT anchor FROM {entity}_assigned
        """,
        """
        CREATE OR REPLACE TEMP TABLE kept AS
            SELECT c.anchor, p.id FROM cluster c JOIN prev_anchor p USING (anchor)
            QUALIFY row_number() OVER (PARTITION BY p.id ORDER BY c.anchor) = 1
        """,
        """
        CREATE OR REPLACE TEMP TABLE unkept AS
            SELECT anchor FROM cluster ANTI JOIN kept USING (anchor)
        """,
        f"""
        CREATE OR REPLACE TEMP TABLE claimed AS
            WITH vote AS (  -- only the few clusters whose anchor is new look at their rows
                SELECT a.anchor, p.id, count(*) AS size
                FROM (SELECT * FROM {entity}_assigned SEMI JOIN unkept USING (anchor)) a
                JOIN prev_member p USING (dataset, source_key, role)
                ANTI JOIN kept t ON p.id = t.id
                GROUP BY ALL
            ), per_id AS (
                SELECT * FROM vote
                QUALIFY row_number() OVER (PARTITION BY id ORDER BY size DESC, anchor) = 1
            )
            SELECT anchor, id FROM per_id
            QUALIFY row_number() OVER (PARTITION BY anchor ORDER BY size DESC, id) = 1
        """,
        f"""
        CREATE OR REPLACE TABLE {entity}_ids AS
            SELECT anchor, id FROM kept
            UNION ALL SELECT anchor, id FROM claimed
            UNION ALL
            SELECT anchor, '{prefix}' || lpad(CAST({first_new} - 1
                       + row_number() OVER (ORDER BY anchor) AS VARCHAR), 10, '0')
            FROM unkept ANTI JOIN claimed USING (anchor)
        """,
        f"""
        CREATE OR REPLACE TABLE {entity}_id_before AS
            SELECT a.row, p.id AS previous_id
            FROM {entity}_assigned a JOIN prev_member p USING (dataset, source_key, role)
            JOIN {entity}_ids i USING (anchor)
            WHERE p.id <> i.id
        """,
    ):  # one by one: each shows in the debug log with its seconds
        ws.execute(statement)


def next_number(ws: Workspace, table: str, prefix: str) -> int:
    """One past the highest number issued in ``table``'s ``id`` column (1 when empty)."""
    top = ws.scalar(f"SELECT max(TRY_CAST(substr(id, {len(prefix) + 1}) AS BIGINT)) FROM {table}")
    return int(top or 0) + 1


def smallest_per_cluster(cluster: pd.Series, values: pd.Series) -> pd.Series:
    """The smallest non-null value per cluster (a sort, not a Python call per group)."""
    frame = pd.DataFrame({"cluster": cluster.to_numpy(), "value": values.to_numpy()}).dropna()
    frame = frame.sort_values(["cluster", "value"]).drop_duplicates("cluster")
    return frame.set_index("cluster")["value"]
