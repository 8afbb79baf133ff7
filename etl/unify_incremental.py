"""An incremental night's persons: re-resolve only what tonight's changes touch.

The workspace is a working copy of the kept state (:mod:`etl.unify_state`): ``mention``,
``link``, ``person``, ``id_merged``, ``person_name``, ``source_row`` as last night left
them, beside tonight's ``new_mention`` (the projected new and changed rows),
``changed_source`` and ``night_source_row`` (:func:`etl.unify.read_mentions` with
``known``). docs/decisions/0023 says why each step gives what a rebuild with the same
kept model gives:

1. **Replaced**: the mentions of every source row that changed, arrived or left.
2. **Affected probes**: an ID-less mention's best link depends only on the mentions that
   share one of its blocking keys (and on the blocks' sizes). So only the ID-less mentions
   sharing a key with a replaced or new mention are scored again, against everyone.
3. **Region**: every person that a replaced mention, an affected probe, its new partner or
   a new mention's ID belongs to. Links of the other ID-less mentions stay inside their
   person, so these persons' mentions are closed: their components, anchors, ids and
   survivorship are computed again from them alone; every other person stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from catalog.errors import PartitionError
from etl.matching import BLOCKING_RULES, Candidates
from etl.unify_ids import PreviousIds, next_number, stable_ids
from etl.unify_person import (
    CUT_KEYS,
    KEY_COLUMNS,
    KEY_SELECT,
    PERSON_PREFIX,
    Components,
    FrozenModel,
    blocking_candidates,
    components,
    keys_of,
    links_by_row,
    number_ids,
    probe_links,
    unified_persons,
)
from etl.unify_workspace import Stopwatch, Workspace

KEY_COLUMNS_SELECT = ", ".join(KEY_COLUMNS + CUT_KEYS)
# what survivorship reads of a mention (unify_person.unified_persons)
SURVIVORSHIP_COLUMNS = (
    "row, dataset, source_key, role, updated_at, filled, name, sex, birth_date, phone, address,"
    " district"
)


@dataclass(frozen=True)
class PersonUpdate:
    """What an incremental night re-resolved, and what it cost."""

    replaced: int  # mentions of changed, new or gone source rows taken out
    new: int  # mentions of tonight's new and changed rows put in
    affected_probes: int  # ID-less mentions scored again
    region_mentions: int  # mentions whose person was computed again
    region_persons: int  # persons they now form
    candidates: Candidates
    conflicting_id_clusters: int
    id_changes: int
    seconds: dict[str, float]

    def describe(self) -> dict:
        return {
            "replaced_mentions": self.replaced,
            "new_mentions": self.new,
            "affected_probes": self.affected_probes,
            "region_mentions": self.region_mentions,
            "region_persons": self.region_persons,
        }


def update_persons(ws: Workspace, frozen: FrozenModel) -> PersonUpdate:
    """Apply tonight's changes to the state's person tables in place (see the module doc).

    Leaves ``person_ids``, ``person_assigned`` (views over the updated state) and
    ``id_merged`` for the enterprises and cases, and ``region_id_before`` (rows whose id
    changed tonight) for the crosswalk.
    """
    clock = Stopwatch()
    ws.execute("""  -- views: what the enterprises and cases read sees the updates
        CREATE OR REPLACE VIEW person_ids AS SELECT anchor, person_id AS id FROM person;
        CREATE OR REPLACE VIEW person_assigned AS SELECT * FROM mention;
    """)
    next_id = next_number(ws, "person_ids", PERSON_PREFIX)  # as last night's table had it
    for statement in (
        """CREATE OR REPLACE TEMP TABLE gone_source AS  -- a snapshot row not delivered as it was
           SELECT * FROM source_row SEMI JOIN gone_hash USING (dataset, src_hash)""",
        """CREATE OR REPLACE TEMP TABLE replaced AS
           SELECT DISTINCT dataset, source_key FROM (
               SELECT dataset, source_key FROM changed_source
               UNION ALL SELECT dataset, source_key FROM gone_source
           )""",
        """CREATE OR REPLACE TEMP TABLE old_row AS
           SELECT row FROM mention SEMI JOIN replaced USING (dataset, source_key)""",
        f"""CREATE OR REPLACE TEMP TABLE old AS  -- only what is needed of them: a wide read
           SELECT row, dataset, source_key, role, anchor, person_id, {KEY_COLUMNS_SELECT}
           FROM mention SEMI JOIN old_row USING (row)""",
        "DELETE FROM mention WHERE row IN (SELECT row FROM old)",
        "INSERT INTO mention BY NAME SELECT * FROM new_mention",
        "CREATE OR REPLACE TEMP VIEW person_mention AS SELECT * FROM mention",
    ):  # one by one: each shows in the debug log with its seconds
        ws.execute(statement)
    clock.lap("replace")
    _affected_probes(ws)
    cands = blocking_candidates(ws, "affected_key")
    clock.lap("blocking")
    affected = ws.frame("SELECT row FROM affected ORDER BY row")["row"].to_numpy()
    rows = np.unique(np.concatenate([cands.left, cands.right, affected]))
    keys = keys_of(ws, rows, frozen.rows)
    links = probe_links(
        keys,
        np.searchsorted(rows, cands.left),
        np.searchsorted(rows, cands.right),
        frozen.model,
        np.searchsorted(rows, affected),
    )
    ws.load("new_link", links_by_row(links, rows))
    clock.lap("scoring")
    region = _region(ws)
    found = _components_of(ws, region, frozen)
    clock.lap("clusters")
    ws.load(
        "region_assigned",
        region[["row", "dataset", "source_key", "role"]].assign(anchor=found.anchor),
    )
    stable_ids(
        ws,
        "region",
        PreviousIds(
            ws.arrow("""
                SELECT anchor, person_id AS id FROM person SEMI JOIN region_anchor USING (anchor)
            """),
            ws.arrow("""
                SELECT dataset, source_key, role, old_id AS id FROM region
                WHERE old_id IS NOT NULL
                UNION ALL SELECT dataset, source_key, role, person_id FROM old
            """),
            next_id,
        ),
        PERSON_PREFIX,
    )
    clock.lap("person_ids")
    persons = _region_persons(ws, region, found.anchor)
    _apply(ws, region, found, persons)
    clock.lap("person_table")
    return PersonUpdate(
        replaced=ws.scalar("SELECT count(*) FROM old"),
        new=ws.scalar("SELECT count(*) FROM new_mention"),
        affected_probes=len(affected),
        region_mentions=len(region),
        region_persons=persons.num_rows,
        candidates=cands,
        conflicting_id_clusters=ws.scalar("SELECT count(DISTINCT anchor) FROM id_merged"),
        id_changes=ws.scalar("SELECT count(*) FROM region_id_before"),
        seconds=clock.laps,
    )


def _affected_probes(ws: Workspace) -> None:
    """``affected``: the ID-less mentions sharing a blocking key with a replaced or new one;
    ``person_key`` marks them as the probes :func:`blocking_candidates` pairs."""
    ws.execute(f"""
        CREATE OR REPLACE TEMP TABLE touched AS
        SELECT {KEY_SELECT} FROM old UNION ALL SELECT {KEY_SELECT} FROM new_mention;
        CREATE OR REPLACE TEMP TABLE probe_key AS
        SELECT row, {KEY_SELECT} FROM mention WHERE id_no IS NULL;
    """)
    parts = []
    for cols in BLOCKING_RULES.values():
        on = " AND ".join(f"p.{c} = t.{c}" for c in cols)
        present = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        parts.append(f"""
            SELECT p.row FROM probe_key p
            SEMI JOIN (SELECT DISTINCT {", ".join(cols)} FROM touched WHERE {present}) t ON {on}
        """)
    ws.execute(f"""
        CREATE OR REPLACE TEMP TABLE affected AS
        SELECT DISTINCT row FROM ({" UNION ALL ".join(parts)});
        CREATE OR REPLACE TEMP TABLE affected_key AS
        SELECT * FROM probe_key SEMI JOIN affected USING (row);
        CREATE OR REPLACE TEMP VIEW person_key AS
        SELECT m.row, a.row IS NOT NULL AS probe, {KEY_SELECT}
        FROM mention m LEFT JOIN affected a USING (row);
    """)


def _region(ws: Workspace) -> pd.DataFrame:
    """``region_anchor`` (the persons computed again) and their mentions, by row."""
    ws.execute("""
        CREATE OR REPLACE TEMP TABLE region_anchor AS
        SELECT anchor FROM old WHERE anchor IS NOT NULL
        UNION SELECT m.anchor FROM mention m
            SEMI JOIN (SELECT row FROM affected UNION ALL SELECT partner FROM new_link) r
            USING (row)
            WHERE m.anchor IS NOT NULL
        UNION SELECT coalesce(x.anchor, n.id_no) FROM new_mention n
            LEFT JOIN id_merged x USING (id_no) WHERE n.id_no IS NOT NULL;
        CREATE OR REPLACE TEMP TABLE region AS
        SELECT row, id_no, dataset, source_key, role, anchor AS old_anchor,
               person_id AS old_id
        FROM mention
        WHERE anchor IS NULL OR anchor IN (SELECT anchor FROM region_anchor);
    """)
    return ws.frame("SELECT * FROM region ORDER BY row")


def _components_of(ws: Workspace, region: pd.DataFrame, frozen: FrozenModel) -> Components:
    """The region's components: same-ID edges, tonight's links of the affected probes and
    the kept links of the others (which must stay inside the region)."""
    links = ws.frame("""
        SELECT row, partner, weight FROM link
        WHERE row IN (SELECT row FROM region) AND row NOT IN (SELECT row FROM affected)
        UNION ALL SELECT row, partner, weight FROM new_link
    """)
    rows, partner = region["row"].to_numpy(), links["partner"].to_numpy()
    outside = ~np.isin(partner, rows)
    if outside.any():
        raise PartitionError(
            f"incremental unification: {int(outside.sum())} links leave the re-resolved"
            " persons (docs/decisions/0023): rebuild with YIMEN_UNIFY_REBUILD_DAYS=1"
        )
    positions = pd.DataFrame(
        {
            "row": np.searchsorted(rows, links["row"].to_numpy()),
            "partner": np.searchsorted(rows, partner),
            "weight": links["weight"].to_numpy(),
        }
    )
    members = region["dataset"] + "|" + region["source_key"] + "|" + region["role"]
    probes = np.flatnonzero(region["id_no"].isna().to_numpy())
    return components(region["id_no"], members, probes, positions, frozen.model.threshold)


def _region_persons(ws: Workspace, region: pd.DataFrame, anchors: np.ndarray) -> pa.Table:
    """The region's persons by survivorship, numbered in id order like a rebuild's."""
    numbers = number_ids(ws, "region_ids")
    k = pd.Series(numbers["k"].to_numpy(), index=numbers["anchor"].to_numpy())
    person_at = k.reindex(anchors).to_numpy()
    if pd.isna(person_at).any():
        raise PartitionError("incremental unification: a re-resolved mention has no person id")
    ws.execute(f"""
        CREATE OR REPLACE TEMP TABLE region_mention AS
        SELECT {SURVIVORSHIP_COLUMNS} FROM mention m SEMI JOIN region USING (row)
    """)  # one pass over the mentions; survivorship then reads only these
    rows = region["row"].to_numpy()
    return unified_persons(ws, person_at.astype(np.int32), rows, "region_mention")


def _apply(ws: Workspace, region: pd.DataFrame, found: Components, persons: pa.Table) -> None:
    """Write the region's anchors, rules, scores, ids, links and persons into the state."""
    rule = np.full(len(region), "exact_id", dtype=object)
    score = np.ones(len(region))
    probes = np.flatnonzero(region["id_no"].isna().to_numpy())
    rule[probes], score[probes] = found.probe_rule, found.probe_score
    ws.load(
        "region_result",
        pd.DataFrame(
            {"row": region["row"].to_numpy(), "anchor": found.anchor, "match_rule": rule,
             "match_score": score}
        ),
    )  # fmt: skip
    ws.load("region_merged", found.id_merged)
    ws.load("region_person", persons)
    ws.execute("""
        UPDATE mention SET anchor = r.anchor, match_rule = r.match_rule,
                           match_score = r.match_score, person_id = r.id
        FROM (  -- only the rows that changed (most of the region keeps its person)
            SELECT r.*, i.id FROM region_result r JOIN region_ids i USING (anchor)
            JOIN mention m USING (row)
            WHERE m.anchor IS DISTINCT FROM r.anchor OR m.person_id IS DISTINCT FROM i.id
               OR m.match_rule IS DISTINCT FROM r.match_rule
               OR m.match_score IS DISTINCT FROM r.match_score
        ) r
        WHERE mention.row = r.row;
        DELETE FROM link WHERE row IN (SELECT row FROM affected) OR row IN (SELECT row FROM old);
        INSERT INTO link SELECT row, partner, weight FROM new_link;
        DELETE FROM person WHERE anchor IN (SELECT anchor FROM region_anchor);
        INSERT INTO person BY NAME SELECT * FROM region_person;
        DELETE FROM id_merged WHERE id_no IN (SELECT id_no FROM region WHERE id_no IS NOT NULL);
        INSERT INTO id_merged BY NAME SELECT * FROM region_merged;
        DELETE FROM source_row USING gone_hash g
            WHERE source_row.dataset = g.dataset AND source_row.src_hash = g.src_hash;
        INSERT INTO source_row SELECT * FROM night_source_row;  -- the rows it did not hold
    """)
