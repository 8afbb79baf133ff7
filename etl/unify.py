"""Unification step: clean partitions → ``raw/unified/{person,enterprise,…}`` (the I/O shell).

Reads every dataset's clean partition of the night in bounded batches, keeps only the
mention columns (:mod:`etl.unify_person`, :mod:`etl.unify_enterprise` are the pure cores),
resolves persons and enterprises, carries unified ids over from the previous night
(:mod:`etl.unify_ids`), and stages the five unified tables, committing them together.
The figures go to the catalog store. docs/decisions/0011-entity-resolution.md says why it
rebuilds from the night's clean snapshot rather than merging increments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date

import pandas as pd
import pyarrow as pa

from catalog.definitions import Catalog, DatasetDef
from catalog.errors import PartitionError
from catalog.figures import UnificationFigures
from catalog.store import CatalogStore, PartitionRecord
from etl.unify_enterprise import (
    assign_enterprise_ids,
    enterprise_mentions,
    resolve_enterprises,
    unified_enterprises,
)
from etl.unify_ids import PreviousIds, id_number
from etl.unify_person import (
    PERSON_PREFIX,
    SUBJECT,
    assign_person_ids,
    person_mentions,
    resolve_persons,
    unified_persons,
)
from etl.zones import RAW_CLEAN, RAW_UNIFIED, Lake

SERVICE_CASES = "xingzheng.service_case"
CASE_COLUMNS = [
    "case_no",
    "applicant_type",
    "department",
    "item_name",
    "district_code",
    "channel",
    "accepted_at",
    "completed_at",
    "satisfaction",
    "status",
    "updated_at",
]
TABLES = ("person", "enterprise", "person_xref", "enterprise_xref", "service_case")
XREF_COLUMNS = ["dataset", "source_key", "role", "match_rule", "match_score"]


@dataclass(frozen=True)
class NightMentions:
    """What the night's clean partitions say about persons, enterprises and cases."""

    persons: pd.DataFrame
    enterprises: pd.DataFrame
    cases: pd.DataFrame
    clean_rows: dict[str, int]


def current_partitions(dataset: DatasetDef, ds: date, store: CatalogStore | None) -> list[date]:
    """The clean partitions that together hold the dataset's current rows as of ``ds``.

    A snapshot delivery's partition is the whole dataset; an incremental one holds only that
    night's changes, so its current rows are every clean partition up to ``ds`` (the store
    lists them), the newest version of each key winning.
    """
    if dataset.source.load != "incremental" or store is None:
        return [ds]
    dates = {
        p.ds for p in store.partitions(zone=RAW_CLEAN) if p.dataset_id == dataset.id and p.ds <= ds
    }
    return sorted(dates | {ds})


def read_mentions(
    catalog: Catalog, ds: date, lake: Lake, store: CatalogStore | None = None
) -> NightMentions:
    """Stream the clean partitions current on ``ds`` and keep only the mention columns."""
    persons, enterprises, cases, keys = [], [], [], {}
    for dataset in catalog.datasets:
        seen = []
        for night in current_partitions(dataset, ds, store):
            for batch in lake.partition_batches(lake.dataset_partition(RAW_CLEAN, dataset, night)):
                frame = batch.to_pandas()
                seen.append(frame[dataset.key[0]])
                persons.append(person_mentions(dataset.id, frame))
                enterprises.append(enterprise_mentions(dataset.id, frame))
                persons, enterprises = _non_empty(persons), _non_empty(enterprises)
                if dataset.id == SERVICE_CASES:
                    cases.append(frame[CASE_COLUMNS])
        keys[dataset.id] = pd.concat(seen).nunique() if seen else 0
    # a key delivered again on a later night: its newest version is the current one
    person = pd.concat(persons, ignore_index=True)
    person = person.drop_duplicates(["dataset", "source_key", "role"], keep="last")
    enterprise = pd.concat(enterprises, ignore_index=True)
    enterprise = enterprise.drop_duplicates(["dataset", "source_key"], keep="last")
    case = pd.concat(cases, ignore_index=True) if cases else pd.DataFrame(columns=CASE_COLUMNS)
    case = case.drop_duplicates("case_no", keep="last")
    return NightMentions(
        person.reset_index(drop=True), enterprise.reset_index(drop=True), case, keys
    )


def _non_empty(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Drop empty frames (keep one), so concatenation keeps every column's type."""
    kept = [f for f in frames if len(f)]
    return kept or frames[:1]


def previous_night(store: CatalogStore, ds: date) -> date | None:
    """The latest date before ``ds`` whose unified tables were committed."""
    dates = [
        p.ds
        for p in store.partitions(zone=RAW_UNIFIED)
        if p.dataset_id == "unified.person_xref" and p.ds < ds
    ]
    return max(dates) if dates else None


def previous_ids(lake: Lake, prev: date | None, entity: str, prefix: str) -> PreviousIds:
    """Last night's anchors (entity table) and crosswalk members, for stable ids."""
    if prev is None:
        return PreviousIds.none()
    id_col = f"{entity}_id"
    try:
        table = lake.read_partition(lake.unified_partition(entity, prev))
        xref = lake.read_partition(lake.unified_partition(f"{entity}_xref", prev))
    except PartitionError:
        return PreviousIds.none()
    anchors = table.select(["anchor", id_col]).to_pandas().rename(columns={id_col: "id"})
    x = xref.select(["dataset", "source_key", "role", id_col]).to_pandas()
    members = pd.DataFrame(
        {"member": x["dataset"] + "|" + x["source_key"] + "|" + x["role"], "id": x[id_col]}
    ).drop_duplicates("member")
    return PreviousIds(anchors, members, id_number(anchors["id"], prefix) + 1)


@dataclass(frozen=True)
class UnifiedNight:
    """The five unified tables of a night and its figures (the pure result, no I/O)."""

    tables: dict[str, pd.DataFrame]
    figures: UnificationFigures


def unified_night(
    mentions: NightMentions,
    ds: date,
    previous_persons: PreviousIds,
    previous_enterprises: PreviousIds,
) -> UnifiedNight:
    """Resolve the night's mentions into unified persons, enterprises, crosswalks and cases."""
    started = time.monotonic()
    people = resolve_persons(mentions.persons)
    person_id, person_before = assign_person_ids(people, previous_persons)
    pm = people.mentions.assign(person_id=person_id.to_numpy())
    persons = unified_persons(pm)
    person_of_id = pm.dropna(subset=["id_no"]).drop_duplicates("id_no")
    person_of_id = person_of_id.set_index("id_no")["person_id"]
    resolved_at = time.monotonic()

    firms = resolve_enterprises(mentions.enterprises)
    enterprise_id, enterprise_before = assign_enterprise_ids(firms, previous_enterprises)
    em = firms.mentions.assign(enterprise_id=enterprise_id.to_numpy(), role=SUBJECT)
    enterprises = unified_enterprises(em, person_of_id)

    person_xref = pm[XREF_COLUMNS].assign(
        person_id=pm["person_id"].to_numpy(), previous_person_id=person_before.to_numpy()
    )
    enterprise_xref = em[XREF_COLUMNS].assign(
        enterprise_id=em["enterprise_id"].to_numpy(),
        previous_enterprise_id=enterprise_before.to_numpy(),
    )
    cases = service_cases(mentions.cases, person_xref, enterprise_xref)
    subject = int((person_xref["role"] == SUBJECT).sum()) + len(enterprise_xref)
    figures = UnificationFigures(
        ds=ds,
        clean_rows=sum(mentions.clean_rows.values()),
        subject_rows=subject,
        persons=len(persons),
        persons_with_id=int(persons["has_valid_id"].sum()),
        person_rows=len(person_xref),
        person_rules=_counts(person_xref["match_rule"]),
        enterprises=len(enterprises),
        unlinked_enterprises=int((~enterprises["linked"]).sum()),
        enterprise_rows=len(enterprise_xref),
        enterprise_rules=_counts(enterprise_xref["match_rule"]),
        conflicting_id_clusters=people.conflicting_id_clusters,
        id_changes=int(person_before.notna().sum() + enterprise_before.notna().sum()),
        details={
            "candidate_pairs": int(len(people.candidates.left)),
            "pairs_per_blocking_rule": people.candidates.per_rule,
            "skipped_blocks": people.candidates.skipped_blocks,
            "weights": people.model.describe(),
            "clean_rows": mentions.clean_rows,
            "seconds_persons": round(resolved_at - started, 1),
            "seconds_total": round(time.monotonic() - started, 1),
        },
    )
    tables = {
        "person": persons,
        "enterprise": enterprises,
        "person_xref": person_xref,
        "enterprise_xref": enterprise_xref,
        "service_case": cases,
    }
    return UnifiedNight(tables, figures)


def service_cases(
    cases: pd.DataFrame, person_xref: pd.DataFrame, enterprise_xref: pd.DataFrame
) -> pd.DataFrame:
    """Each case with its applicant resolved to a unified person or enterprise."""

    def resolved(xref: pd.DataFrame, id_col: str) -> pd.DataFrame:
        mine = xref[(xref["dataset"] == SERVICE_CASES) & (xref["role"] == SUBJECT)]
        return mine[["source_key", id_col, "match_rule", "match_score"]].rename(
            columns={"source_key": "case_no"}
        )

    both = pd.concat(
        [resolved(person_xref, "person_id"), resolved(enterprise_xref, "enterprise_id")],
        ignore_index=True,
    )
    return cases.merge(both, on="case_no", how="left")


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def unify_partitions(
    catalog: Catalog, ds: date, *, lake: Lake, store: CatalogStore, run_id: str
) -> UnificationFigures:
    """The step: read the night's clean partitions, unify, commit five tables, record figures."""
    mentions = read_mentions(catalog, ds, lake, store)
    prev = previous_night(store, ds)
    night = unified_night(
        mentions,
        ds,
        previous_ids(lake, prev, "person", PERSON_PREFIX),
        previous_ids(lake, prev, "enterprise", "E"),
    )
    figures = night.figures
    if not figures.conserved:
        raise PartitionError(
            f"unification {ds}: {figures.clean_rows:,} clean rows but "
            f"{figures.subject_rows:,} subject rows in the crosswalks: nothing written"
        )
    staged = []
    try:
        for name in TABLES:
            table = _arrow(night.tables[name])
            staged.append(
                lake.stage_partition(
                    lake.unified_partition(name, ds),
                    table.to_batches(),
                    table.schema,
                    private=True,
                    extra={"previous_night": prev.isoformat() if prev else None},
                )
            )
    except BaseException:
        lake.discard(staged)
        raise
    lake.commit(staged, run_id=run_id)
    for name, one in zip(TABLES, staged, strict=True):
        store.record_partition(
            run_id,
            PartitionRecord(
                zone=RAW_UNIFIED,
                dataset_id=f"unified.{name}",
                ds=ds,
                path=one.manifest.path,
                rows=one.manifest.rows,
                fingerprint=one.manifest.fingerprint,
            ),
        )
    figures = UnificationFigures(**{**figures.__dict__, "run_id": run_id})
    store.record_unification(run_id, figures)
    return figures


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """A unified table as Arrow: text as strings, timestamps in microseconds."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type):
            fields.append(pa.field(f.name, pa.timestamp("us")))
        elif pa.types.is_large_string(f.type) or pa.types.is_null(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))
