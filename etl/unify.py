"""Unification step: clean partitions → ``raw/unified/{person,enterprise,…}`` (the I/O shell).

Reads every dataset's clean partition of the night in bounded batches, keeps only the
mention columns (:mod:`etl.unify_person`, :mod:`etl.unify_enterprise` are the pure cores),
resolves persons and enterprises, carries unified ids over from the previous night
(:mod:`etl.unify_ids`), and stages the five unified tables, committing them together.
The figures go to the catalog store. docs/decisions/0011-entity-resolution.md says why it
rebuilds from the night's clean snapshot rather than merging increments.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.definitions import Catalog, DatasetDef
from catalog.errors import PartitionError
from catalog.figures import UnificationFigures
from catalog.store import CatalogStore, PartitionRecord
from etl.unify_cache import CacheWriter, MentionCache
from etl.unify_enterprise import (
    ENTERPRISE_PREFIX,
    enterprise_mentions,
    no_enterprise_mentions,
    resolve_enterprises,
    unified_enterprises,
)
from etl.unify_enterprise import SOURCE_RANK as SOURCE_RANK_ENTERPRISE
from etl.unify_ids import PreviousIds, stable_ids
from etl.unify_person import (
    PERSON_COLUMNS,
    PERSON_PREFIX,
    SUBJECT,
    empty_mentions,
    person_mentions,
    resolve_persons,
    unified_persons,
)
from etl.unify_workspace import (
    BATCH_ROWS,
    ParquetFiles,
    Stopwatch,
    Workspace,
    exact_batches,
    in_order,
    workspace,
)
from etl.zones import RAW_CLEAN, RAW_UNIFIED, Lake

SERVICE_CASES = "xingzheng.service_case"
TABLES = ("person", "enterprise", "person_xref", "enterprise_xref", "service_case")
XREF_COLUMNS = ["dataset", "source_key", "role", "match_rule", "match_score"]


@dataclass(frozen=True)
class NightMentions:
    """What the night's clean partitions say about enterprises and cases, and how many rows.

    The person mentions (millions of rows) go straight into the workspace's
    ``person_mention`` table instead (:func:`load_person_mentions`).
    """

    enterprises: pd.DataFrame
    cases: pd.DataFrame
    clean_rows: dict[str, int]
    cached_rows: int = 0  # person mentions that came from the mention cache


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


ENTERPRISE_DATASETS = set(SOURCE_RANK_ENTERPRISE)


@dataclass(frozen=True)
class _Read:
    """One batch on its way to mentions: clean rows, or mentions from the cache.

    ``drop`` (keys a newer partition delivers again) is applied to the mentions when the
    batch is cached or comes from the cache, so the cache holds whole partitions; a batch
    with ``finished`` set carries no rows and closes that partition's cache file.
    """

    dataset_id: str
    batch: pa.Table | None
    drop: pa.Array | None = None
    cached: bool = False
    cache_to: CacheWriter | None = None
    finished: CacheWriter | None = None


def read_mentions(
    ws: Workspace,
    catalog: Catalog,
    ds: date,
    lake: Lake,
    store: CatalogStore | None = None,
    cache: MentionCache | None = None,
) -> NightMentions:
    """Stream the clean partitions current on ``ds``: persons into the workspace, the rest kept.

    Batches are projected onto mentions on two threads (Arrow and numpy release the GIL),
    at most two batches in flight, so memory stays bounded by the batch size. The person
    registers' partitions that an incremental night leaves as they were come from the
    ``cache``, as they were projected before (:mod:`etl.unify_cache`).
    """
    enterprises, cases, keys = [], [], {}
    case_columns = service_case_columns(catalog)
    cached_rows = 0
    cache_files: set[Path] = set()
    writers: list[CacheWriter] = []

    def clean_batches() -> Iterator[_Read]:
        for dataset in catalog.datasets:
            key = dataset.key[0]
            keys[dataset.id] = 0
            nights = current_partitions(dataset, ds, store)
            superseded = superseded_keys(lake, dataset, nights)
            cacheable = (
                cache is not None
                and store is not None
                and dataset.source.load == "incremental"
                and dataset.id in PERSON_COLUMNS  # one mention per row, keyed by the row's key
            )
            for night in nights:
                drop = superseded.get(night)
                record = store.partition(RAW_CLEAN, dataset.id, night) if cacheable else None
                writer = None
                if record is not None:
                    cached = cache.path(dataset.id, night, record.fingerprint)
                    cache_files.add(cached)
                    if cache.holds(cached, record.rows):
                        for mentions in cache.read(cached):
                            yield _Read(dataset.id, mentions, drop, cached=True)
                        continue
                    writer = cache.writer(cached)
                    writers.append(writer)
                path = lake.dataset_partition(RAW_CLEAN, dataset, night)
                wanted = PERSON_COLUMNS.get(dataset.id)
                if wanted is not None:
                    present = set(lake.partition_columns(path))
                    wanted = [c for c in wanted if c in present]
                for batch in lake.partition_batches(path, columns=wanted):
                    if writer is not None:  # cached whole; ``drop`` applies to its mentions
                        yield _Read(dataset.id, batch, drop, cache_to=writer)
                        continue
                    if drop is not None:  # delivered again later: the newer row counts
                        batch = batch.filter(pc.invert(pc.is_in(batch.column(key), drop)))
                    yield _Read(dataset.id, batch)
                if writer is not None:
                    yield _Read(dataset.id, None, finished=writer)

    def project(item: _Read) -> tuple[_Read, pa.Table, pa.Table | None, list, list]:
        """One batch's mentions, and the same before ``drop`` when they go to the cache
        (on a worker thread: it returns, the reader collects)."""
        if item.batch is None:
            return item, empty_mentions(), None, [], []
        if item.cached:
            return item, _without(item.batch, item.drop), None, [], []
        firms, case = [], []
        if item.dataset_id in ENTERPRISE_DATASETS:
            frame = item.batch.to_pandas()
            firms.append(enterprise_mentions(item.dataset_id, frame))
            if item.dataset_id == SERVICE_CASES:
                case.append(frame[case_columns])
        persons = person_mentions(item.dataset_id, item.batch)
        if item.cache_to is None:
            return item, persons, None, firms, case
        if persons.num_rows != item.batch.num_rows:
            raise PartitionError(f"unification: {item.dataset_id} rows are not one mention each")
        return item, _without(persons, item.drop), persons, firms, case

    def person_batches() -> Iterator[pa.Table]:
        nonlocal cached_rows
        # collected here, in the batches' order, so every night lists them the same way
        for item, persons, whole, firms, case in in_order(project, clean_batches()):
            cached_rows += persons.num_rows if item.cached else 0
            if whole is not None:
                item.cache_to.write(whole)
            if item.finished is not None:
                item.finished.finish()
            enterprises.extend(firms)
            cases.extend(case)
            # a clean partition holds each key once, and only a key's newest copy is read
            one_each = item.cached or item.cache_to is not None or item.batch is None
            keys[item.dataset_id] += persons.num_rows if one_each else item.batch.num_rows
            yield persons

    try:
        load_person_mentions(ws, person_batches())
    finally:
        for writer in writers:
            writer.abandon()  # unfinished (a failure, or an empty partition): not kept
    enterprise = pd.concat(_non_empty(enterprises, no_enterprise_mentions()), ignore_index=True)
    case = pd.concat(cases, ignore_index=True) if cases else pd.DataFrame(columns=case_columns)
    if cache is not None:
        cache.keep_only(cache_files)
    return NightMentions(enterprise, case, keys, cached_rows)


def service_case_columns(catalog: Catalog) -> list[str]:
    """The case's own fields kept in ``service_case``: every field that is not personal (the
    applicant is kept as the person or enterprise it resolves to), as the catalog says."""
    ids = {d.id for d in catalog.datasets}
    fields = catalog.dataset(SERVICE_CASES).fields if SERVICE_CASES in ids else []
    return [f.name for f in fields if not f.pii]


def _without(mentions: pa.Table, drop: pa.Array | None) -> pa.Table:
    """The mentions whose source row is not delivered again by a newer partition."""
    if drop is None:
        return mentions
    again = pc.is_in(mentions.column("source_key"), drop.cast(pa.string()))
    return mentions.filter(pc.invert(again))


def superseded_keys(lake: Lake, dataset: DatasetDef, nights: list[date]) -> dict[date, pa.Array]:
    """Per partition, the keys that newer partitions deliver (its rows of them are not current).

    Only incremental datasets read more than one partition, and only the newer ones are
    read here: a night's changes are small, so these sets are small, the first (whole)
    partition's keys are never read for them, and filtering a batch is one hash look-up
    per row.
    """
    out: dict[date, pa.Array] = {}
    newer: pa.Array | None = None
    key = dataset.key[0]
    for older, night in zip(reversed(nights[:-1]), reversed(nights[1:]), strict=True):
        path = lake.dataset_partition(RAW_CLEAN, dataset, night)
        parts = [b.column(key) for b in lake.partition_batches(path, columns=[key])]
        mine = pa.chunked_array(parts).combine_chunks() if parts else pa.array([], pa.string())
        newer = mine if newer is None else pa.concat_arrays([newer, mine.cast(newer.type)])
        newer = newer.unique()
        if len(newer):
            out[older] = newer
    return out


def load_person_mentions(ws: Workspace, batches: Iterable[pa.Table]) -> int:
    """``person_mention``: the batches' rows numbered in order (``row``, from 0)."""
    offset = 0

    def numbered() -> Iterator[pa.Table]:
        nonlocal offset
        for batch in batches:
            if batch.num_rows:
                rows = pa.array(np.arange(offset, offset + batch.num_rows), pa.int64())
                yield batch.append_column("row", rows)
                offset += batch.num_rows

    empty = empty_mentions().append_column("row", pa.array([], pa.int64()))
    ws.load_spilled("person_mention", numbered(), empty)
    return ws.scalar("SELECT count(*) FROM person_mention")


def _non_empty(frames: list[pd.DataFrame], empty: pd.DataFrame | None = None) -> list[pd.DataFrame]:
    """Drop empty frames (keep one, else ``empty``), so concatenation keeps column types."""
    kept = [f for f in frames if len(f)]
    return kept or frames[:1] or ([] if empty is None else [empty])


def previous_night(store: CatalogStore, ds: date) -> date | None:
    """The latest date before ``ds`` whose unified tables were committed."""
    dates = [
        p.ds
        for p in store.partitions(zone=RAW_UNIFIED)
        if p.dataset_id == "unified.person_xref" and p.ds < ds
    ]
    return max(dates) if dates else None


def previous_ids(lake: Lake, prev: date | None, entity: str) -> PreviousIds:
    """Last night's anchors (entity table) and crosswalk rows, for stable ids.

    The lake's own local files are handed to DuckDB as they are (no copy); otherwise the
    partitions are streamed in batches.
    """
    if prev is None:
        return PreviousIds.none()
    id_col = f"{entity}_id"
    table = lake.unified_partition(entity, prev)
    xref = lake.unified_partition(f"{entity}_xref", prev)
    try:
        if not lake.partition_columns(table) or not lake.partition_columns(xref):
            return PreviousIds.none()
        files = lake.local_files(table), lake.local_files(xref)
    except PartitionError:
        return PreviousIds.none()
    if all(files):
        return PreviousIds(
            ParquetFiles(files[0], {"anchor": "anchor", "id": id_col}),
            ParquetFiles(
                files[1],
                {"dataset": "dataset", "source_key": "source_key", "role": "role", "id": id_col},
            ),
        )

    def anchors() -> Iterator[pa.Table]:
        for b in lake.partition_batches(table, columns=["anchor", id_col]):
            yield pa.table({"anchor": b.column("anchor"), "id": b.column(id_col)})

    def members() -> Iterator[pa.Table]:
        for b in lake.partition_batches(xref, columns=["dataset", "source_key", "role", id_col]):
            yield b.rename_columns(["dataset", "source_key", "role", "id"])

    none = PreviousIds.none()
    return PreviousIds(_or(anchors(), none.anchors), _or(members(), none.members))


def _or(batches: Iterator[pa.Table], empty: pd.DataFrame) -> Iterator[pa.Table | pd.DataFrame]:
    """The stream, or ``empty`` when it yields nothing (a partition without rows)."""
    got = False
    for batch in batches:
        got = True
        yield batch
    if not got:
        yield empty


@dataclass(frozen=True)
class UnifiedNight:
    """The five unified tables of a night and its figures: ``person_xref`` (7.5 million rows
    at full scale) is assembled from the workspace when it is written, the others are Arrow."""

    ws: Workspace
    tables: dict[str, pa.Table]
    figures: UnificationFigures
    person_at: np.ndarray  # each mention's person by row: its place in ``person_number``

    def batches(self, name: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Table ``name`` in bounded record batches, as written (see :func:`_writable`)."""
        if name in self.tables:
            schema = _writable(self.tables[name].schema)
            batches = iter(self.tables[name].to_batches(BATCH_ROWS))
        else:
            batches = person_xref_batches(self.ws, self.person_at)
            first = next(batches)
            schema = _writable(first.schema)
            batches = itertools.chain([first], batches)
        return schema, (b.cast(schema) for b in exact_batches(batches, BATCH_ROWS))

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables as pandas frames (small nights: tests, the demo's summary)."""
        frames = {name: table.to_pandas() for name, table in self.tables.items()}
        xref = pa.Table.from_batches(list(person_xref_batches(self.ws, self.person_at)))
        return {**frames, "person_xref": xref.to_pandas()}


def number_persons(ws: Workspace) -> np.ndarray:
    """``person_number`` (each person's anchor and id, and ``k``: its place in id order) and
    each mention's ``k`` by row number: one join of the night's mentions with their persons,
    which both the person table and the crosswalk use."""
    n = ws.scalar("SELECT count(*) FROM person_mention")
    ws.execute("""
        CREATE OR REPLACE TABLE person_number AS
        SELECT anchor, id,  -- P0000000042: the number sorts faster than the text
               (row_number() OVER (ORDER BY CAST(substr(id, 2) AS BIGINT)) - 1)::INTEGER AS k
        FROM person_ids
    """)
    found = ws.arrow("""
        SELECT a.row, n.k AS at FROM person_assigned a JOIN person_number n USING (anchor)
    """)
    return _by_row(n, found)


def person_xref_batches(ws: Workspace, person_at: np.ndarray) -> Iterator[pa.RecordBatch]:
    """The person crosswalk in mention order, assembled batch by batch.

    The crosswalk's own columns are read from the spilled mentions as they lie, and each
    row's id is put in place by its person (``person_at``, :func:`number_persons`): the
    same rows as a SQL ``ORDER BY row`` over the joined mentions, without sorting 7.5
    million rows of text (half the cost). Per row only small integers are held (the
    person's place, the probe's, the change's).
    """
    n = len(person_at)
    ids = ws.arrow("SELECT id FROM person_number ORDER BY k").column("id").combine_chunks()
    probes = ws.arrow("""  -- a row with a valid ID is matched on it: exact_id, score 1
        SELECT row, match_rule, match_score FROM person_assigned WHERE id_no IS NULL
    """)
    probe_at = _by_row(n, probes.append_column("at", pa.array(np.arange(probes.num_rows))))
    before = ws.arrow("SELECT row, previous_id FROM person_id_before")
    changed_at = _by_row(n, before.append_column("at", pa.array(np.arange(before.num_rows))))
    rules, scores = (probes.column(c).combine_chunks() for c in ("match_rule", "match_score"))
    previous = before.column("previous_id").combine_chunks()
    start = 0
    mentions_of = ws.row_batches("person_mention", XREF_COLUMNS[:3])
    for mentions in itertools.chain(mentions_of, [] if n else [_no_mentions()]):
        rows = slice(start, start + mentions.num_rows)
        columns = dict(zip(mentions.schema.names, mentions.columns, strict=True))
        probe = probe_at[rows]
        is_probe, at_probe = pa.array(probe >= 0), pa.array(probe, mask=probe < 0)
        columns["match_rule"] = pc.if_else(is_probe, pc.take(rules, at_probe), "exact_id")
        columns["match_score"] = pc.if_else(is_probe, pc.take(scores, at_probe), 1.0)
        columns["person_id"] = pc.take(ids, pa.array(person_at[rows]))
        was = changed_at[rows]
        columns["previous_person_id"] = pc.take(previous, pa.array(was, mask=was < 0))
        start = rows.stop
        yield pa.RecordBatch.from_pydict(columns)
    if start != n or (n and person_at.min() < 0):
        raise PartitionError(f"person crosswalk: {start:,} mentions for {n:,} assigned rows")


def _by_row(n: int, found: pa.Table) -> np.ndarray:
    """``found.at`` placed at ``found.row`` in an array of ``n`` (-1 where nothing was found)."""
    out = np.full(n, -1, dtype=np.int32)
    out[found.column("row").to_numpy()] = found.column("at").to_numpy()
    return out


def _no_mentions() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({c: pa.array([], pa.string()) for c in XREF_COLUMNS[:3]})


def unified_night(
    ws: Workspace,
    mentions: NightMentions,
    ds: date,
    previous_persons: PreviousIds,
    previous_enterprises: PreviousIds,
) -> UnifiedNight:
    """Resolve the workspace's person mentions and the night's enterprise mentions.

    The enterprises are linked on a second thread while the persons are resolved: pandas
    work beside the workspace's SQL, which leaves a core idle much of the time.
    """
    started = time.monotonic()
    with ThreadPoolExecutor(1) as beside:
        linking = beside.submit(resolve_enterprises, mentions.enterprises)
        people = resolve_persons(ws)
        clock = Stopwatch()
        stable_ids(ws, "person", previous_persons, PERSON_PREFIX)
        clock.lap("person_ids")
        resolved_at = time.monotonic()
        firms = linking.result()
    clock.lap("enterprise_links")  # the wait for them, if they are not done yet
    em = firms.mentions
    ws.load(
        "enterprise_assigned",
        em[["dataset", "source_key", "anchor"]].assign(role=SUBJECT, row=np.arange(len(em))),
    )
    stable_ids(ws, "enterprise", previous_enterprises, ENTERPRISE_PREFIX)
    ids = ws.frame("""
        SELECT a.row, i.id, b.previous_id FROM enterprise_assigned a
        JOIN enterprise_ids i USING (anchor) LEFT JOIN enterprise_id_before b USING (row)
        ORDER BY a.row
    """)
    em = em.assign(enterprise_id=ids["id"].to_numpy(), role=SUBJECT)
    clock.lap("enterprise_ids")
    enterprises = unified_enterprises(em, _person_of_id(ws, em))
    enterprise_xref = em[XREF_COLUMNS].assign(
        enterprise_id=em["enterprise_id"].to_numpy(),
        previous_enterprise_id=ids["previous_id"].to_numpy(),
    )
    cases = service_cases(ws, mentions.cases, enterprise_xref)
    tables = {
        "enterprise": _arrow(enterprises),
        "enterprise_xref": _arrow(enterprise_xref),
        "service_case": _arrow(cases),
    }
    firm_figures = {
        "enterprises": len(enterprises),
        "unlinked_enterprises": int((~enterprises["linked"]).sum()),
        "enterprise_rows": len(enterprise_xref),
        "enterprise_rules": {
            str(k): int(v)
            for k, v in enterprise_xref["match_rule"].value_counts().sort_index().items()
        },
    }
    firm_changes = int(enterprise_xref["previous_enterprise_id"].notna().sum())
    fallback = firms.fuzzy.as_dict()  # what the name-and-address fallback compared
    del firms, em, ids, enterprises, enterprise_xref, cases  # written from ``tables`` now
    clock.lap("enterprise_tables")
    # the person table last: its columns are not held while the enterprises are worked on
    person_at = number_persons(ws)
    persons = unified_persons(ws, person_at)
    clock.lap("person_table")

    person_rules = _counts(ws, "person_assigned", "match_rule")
    figures = UnificationFigures(
        ds=ds,
        clean_rows=sum(mentions.clean_rows.values()),
        subject_rows=ws.scalar("SELECT count(*) FROM person_assigned WHERE role = ?", [SUBJECT])
        + firm_figures["enterprise_rows"],
        persons=persons.num_rows,
        persons_with_id=pc.sum(persons.column("has_valid_id")).as_py() or 0,
        person_rows=sum(person_rules.values()),
        person_rules=person_rules,
        **firm_figures,
        conflicting_id_clusters=people.conflicting_id_clusters,
        id_changes=ws.scalar("SELECT count(*) FROM person_id_before") + firm_changes,
        details={
            "candidate_pairs": int(len(people.candidates.left)),
            "pairs_per_blocking_rule": people.candidates.per_rule,
            "skipped_blocks": people.candidates.skipped_blocks,
            "enterprise_fallback": fallback,
            "weights": people.model.describe(),
            "clean_rows": mentions.clean_rows,
            "mentions_from_cache": mentions.cached_rows,
            "seconds_persons": round(resolved_at - started, 1),
            "seconds_parts": {**people.seconds, **clock.laps},
            "seconds_total": round(time.monotonic() - started, 1),
        },
    )
    return UnifiedNight(ws, {"person": persons, **tables}, figures, person_at)


def _arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def _person_of_id(ws: Workspace, em: pd.DataFrame) -> pd.Series:
    """Unified person id of each legal representative's / owner's resident ID."""
    wanted = pd.concat([em["legal_rep_id_no"], em["owner_id"].str.slice(0, 18)]).dropna()
    ws.load("wanted_id", pd.DataFrame({"id_no": wanted.astype("str").unique()}))
    found = ws.frame("""  -- a valid ID anchors its person (or the ID it was merged into)
        SELECT w.id_no, i.id FROM wanted_id w LEFT JOIN id_merged m USING (id_no)
        JOIN person_ids i ON i.anchor = coalesce(m.anchor, w.id_no)
    """)
    return found.drop_duplicates("id_no").set_index("id_no")["id"]


def service_cases(
    ws: Workspace, cases: pd.DataFrame, enterprise_xref: pd.DataFrame
) -> pd.DataFrame:
    """Each case with its applicant resolved to a unified person or enterprise."""
    people = ws.frame(
        """SELECT a.source_key AS case_no, i.id AS person_id, a.match_rule, a.match_score
           FROM person_assigned a JOIN person_ids i USING (anchor)
           WHERE a.dataset = ? AND a.role = ?""",
        [SERVICE_CASES, SUBJECT],
    )
    mine = enterprise_xref[
        (enterprise_xref["dataset"] == SERVICE_CASES) & (enterprise_xref["role"] == SUBJECT)
    ]
    firms = mine[["source_key", "enterprise_id", "match_rule", "match_score"]].rename(
        columns={"source_key": "case_no"}
    )
    both = pd.concat(_non_empty([people, firms]), ignore_index=True)
    out = cases.merge(both, on="case_no", how="left")
    for col in ("person_id", "enterprise_id"):
        if col not in out:
            out[col] = pd.Series(dtype="str")
    return out


def _counts(ws: Workspace, table: str, column: str) -> dict[str, int]:
    counts = ws.frame(f"SELECT {column} AS k, count(*) AS n FROM {table} GROUP BY 1 ORDER BY 1")
    return {str(k): int(v) for k, v in zip(counts["k"], counts["n"], strict=True)}


def unify_partitions(
    catalog: Catalog,
    ds: date,
    *,
    lake: Lake,
    store: CatalogStore,
    run_id: str,
    scratch: Path | None = None,
    memory_limit: str = "1GB",
    mention_cache: Path | None = None,
) -> UnificationFigures:
    """The step: read the night's clean partitions, unify, commit five tables, record figures.

    The work happens in a DuckDB workspace under ``scratch`` (a private file, removed after),
    so memory stays near ``memory_limit`` plus the enterprise frames whatever the night's size.
    """
    prev = previous_night(store, ds)
    started = time.monotonic()
    with workspace(scratch, memory_limit) as ws:
        cache = MentionCache(mention_cache) if mention_cache else None
        mentions = read_mentions(ws, catalog, ds, lake, store, cache)
        read_at = time.monotonic()
        night = unified_night(
            ws,
            mentions,
            ds,
            previous_ids(lake, prev, "person"),
            previous_ids(lake, prev, "enterprise"),
        )
        figures = night.figures
        if not figures.conserved:
            raise PartitionError(
                f"unification {ds}: {figures.clean_rows:,} clean rows but "
                f"{figures.subject_rows:,} subject rows in the crosswalks: nothing written"
            )
        staged, writes = [], Stopwatch()
        try:
            for name in TABLES:
                schema, batches = night.batches(name)
                staged.append(
                    lake.stage_partition(
                        lake.unified_partition(name, ds),
                        batches,
                        schema,
                        private=True,
                        extra={"previous_night": prev.isoformat() if prev else None},
                    )
                )
                night.tables.pop(name, None)  # written: not held while the next is built
                writes.lap(f"write_{name}")
        except BaseException:
            lake.discard(staged)
            raise
        written_at = time.monotonic()
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
    seconds = {
        "seconds_read": round(read_at - started, 1),
        "seconds_write": round(written_at - read_at - figures.details["seconds_total"], 1),
        "seconds_step": round(time.monotonic() - started, 1),
    }
    details = {**figures.details, **seconds}
    details["seconds_parts"] = {**details["seconds_parts"], **writes.laps}
    figures = UnificationFigures(**{**figures.__dict__, "details": details, "run_id": run_id})
    store.record_unification(run_id, figures)
    return figures


def _writable(schema: pa.Schema) -> pa.Schema:
    """A unified table's schema as written: text as strings, timestamps in microseconds."""
    fields = []
    for f in schema:
        if pa.types.is_timestamp(f.type):
            fields.append(pa.field(f.name, pa.timestamp("us")))
        elif pa.types.is_large_string(f.type) or pa.types.is_null(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    return pa.schema(fields)
