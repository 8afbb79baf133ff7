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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
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
from etl.changes import row_hash
from etl.settings import DEFAULT_UNIFY_REBUILD_DAYS
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
from etl.unify_incremental import update_persons
from etl.unify_person import (
    PERSON_COLUMNS,
    PERSON_PREFIX,
    SUBJECT,
    FrozenModel,
    empty_mentions,
    number_ids,
    person_mentions,
    resolve_persons,
    unified_persons,
)
from etl.unify_state import PERSON_TABLES, StateMark, UnifyState, clean_fingerprints, state_code
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
PERSON_NAMES = ("person", "person_xref")
TABLES = ("person", "enterprise", "person_xref", "enterprise_xref", "service_case")
XREF_COLUMNS = ["dataset", "source_key", "role", "match_rule", "match_score"]


@dataclass(frozen=True)
class NightMentions:
    """What the night's clean partitions say about enterprises and cases, and how many rows.

    The person mentions (millions of rows) go straight into the workspace's
    ``person_mention`` table instead (:func:`load_person_mentions`), and each snapshot
    source row's key and content hash into ``night_source_row`` (what an incremental night
    compares with); an incremental night also lists the rows it projected in
    ``changed_source``.
    """

    enterprises: pd.DataFrame
    cases: pd.DataFrame
    clean_rows: dict[str, int]
    cached_rows: int = 0  # person mentions that came from the mention cache
    unread: frozenset[str] = frozenset()  # datasets whose older partitions were not read


@dataclass(frozen=True)
class KnownRows:
    """What a kept unification state already holds (:mod:`etl.unify_incremental`).

    ``hashes``: per snapshot dataset, the sorted content hashes of its source rows (a row
    whose hash is among them is unchanged); ``partitions``: per incremental dataset, how many
    of its current clean partitions (oldest first) the state has read.
    """

    hashes: dict[str, np.ndarray]
    partitions: dict[str, int]
    first_row: int  # the number the night's first new mention gets


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
    ``persons``: which of its rows become person mentions — all, none (an incremental
    night's partition the state already holds, read for its enterprises), or only those
    whose content hash ``known`` does not hold (a snapshot on an incremental night).
    """

    dataset_id: str
    batch: pa.Table | None
    drop: pa.Array | None = None
    cached: bool = False
    cache_to: CacheWriter | None = None
    finished: CacheWriter | None = None
    persons: str = "all"  # all | none | changed
    hashed: bool = False  # a snapshot: hash its rows (``source_row``)
    known: np.ndarray | None = None


def read_mentions(
    ws: Workspace,
    catalog: Catalog,
    ds: date,
    lake: Lake,
    store: CatalogStore | None = None,
    cache: MentionCache | None = None,
    known: KnownRows | None = None,
) -> NightMentions:
    """Stream the clean partitions current on ``ds``: persons into the workspace, the rest kept.

    Batches are projected onto mentions on two threads (Arrow and numpy release the GIL),
    at most two batches in flight, so memory stays bounded by the batch size. The person
    registers' partitions that an incremental night leaves as they were come from the
    ``cache``, as they were projected before (:mod:`etl.unify_cache`). With ``known`` (a
    kept unification state) only the rows it does not hold become mentions, numbered from
    its ``first_row``, and the person registers' partitions it holds are not read at all.
    """
    enterprises, cases, keys, sources, changed = [], [], {}, [], []
    seen: dict[str, list[np.ndarray]] = {}  # an incremental night: tonight's snapshot hashes
    case_columns = service_case_columns(catalog)
    cached_rows = 0
    cache_files: set[Path] = set()
    writers: list[CacheWriter] = []
    unread: set[str] = set()

    def clean_batches() -> Iterator[_Read]:
        for dataset in catalog.datasets:
            key = dataset.key[0]
            keys[dataset.id] = 0
            nights = current_partitions(dataset, ds, store)
            snapshot = dataset.source.load == "snapshot"
            held = 0 if known is None or snapshot else known.partitions.get(dataset.id, 0)
            if held and dataset.id not in ENTERPRISE_DATASETS:
                nights, held = nights[held:], 0  # the state holds the older ones
                unread.add(dataset.id)
            superseded = superseded_keys(lake, dataset, nights)
            cacheable = (
                cache is not None
                and known is None
                and store is not None
                and dataset.source.load == "incremental"
                and dataset.id in PERSON_COLUMNS  # one mention per row, keyed by the row's key
            )
            for i, night in enumerate(nights):
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
                if known is None:
                    persons = "all"
                elif snapshot:
                    persons = "changed"
                else:
                    persons = "none" if i < held else "all"
                mine = None if known is None else known.hashes.get(dataset.id)
                for batch in lake.partition_batches(path, columns=wanted):
                    if writer is not None:  # cached whole; ``drop`` applies to its mentions
                        yield _Read(dataset.id, batch, drop, cache_to=writer, hashed=snapshot)
                        continue
                    if drop is not None:  # delivered again later: the newer row counts
                        batch = batch.filter(pc.invert(pc.is_in(batch.column(key), drop)))
                    yield _Read(dataset.id, batch, persons=persons, hashed=snapshot, known=mine)
                if writer is not None:
                    yield _Read(dataset.id, None, finished=writer)

    def project(item: _Read) -> tuple[_Read, pa.Table, pa.Table | None, list, list, _Rows]:
        """One batch's mentions, and the same before ``drop`` when they go to the cache
        (on a worker thread: it returns, the reader collects)."""
        rows = _Rows()
        if item.batch is None:
            return item, empty_mentions(), None, [], [], rows
        if item.cached:
            return item, _without(item.batch, item.drop), None, [], [], rows
        firms, case = [], []
        if item.dataset_id in ENTERPRISE_DATASETS:
            frame = item.batch.to_pandas()
            firms.append(enterprise_mentions(item.dataset_id, frame))
            if item.dataset_id == SERVICE_CASES:
                case.append(frame[case_columns])
        batch, dataset = item.batch, catalog.dataset(item.dataset_id)
        if item.hashed:  # a snapshot's rows as the state will know them
            hashes = row_hash(batch, dataset)
            rows.hashed = _source_rows(item.dataset_id, _text_key(batch, dataset), hashes)
        if item.persons == "none":
            return item, empty_mentions(), None, firms, case, rows
        if item.persons == "changed":  # only the rows the state does not hold
            rows.seen = rows.hashed.column("src_hash").to_numpy()
            new = pa.array(~_member(rows.seen, item.known))
            batch, rows.hashed = batch.filter(new), rows.hashed.filter(new)
        if known is not None:  # the rows whose mentions the night replaces
            rows.changed = _source_rows(item.dataset_id, _text_key(batch, dataset))
        persons = person_mentions(item.dataset_id, batch)
        if item.cache_to is None:
            return item, persons, None, firms, case, rows
        if persons.num_rows != item.batch.num_rows:
            raise PartitionError(f"unification: {item.dataset_id} rows are not one mention each")
        return item, _without(persons, item.drop), persons, firms, case, rows

    def person_batches() -> Iterator[pa.Table]:
        nonlocal cached_rows
        # collected here, in the batches' order, so every night lists them the same way
        for item, persons, whole, firms, case, rows in in_order(project, clean_batches()):
            cached_rows += persons.num_rows if item.cached else 0
            if whole is not None:
                item.cache_to.write(whole)
            if item.finished is not None:
                item.finished.finish()
            enterprises.extend(firms)
            cases.extend(case)
            sources.extend([rows.hashed] if rows.hashed is not None else [])
            if rows.seen is not None:
                seen.setdefault(item.dataset_id, []).append(rows.seen)
            changed.extend([rows.changed] if rows.changed is not None else [])
            # a clean partition holds each key once, and only a key's newest copy is read
            one_each = item.cached or item.cache_to is not None or item.batch is None
            keys[item.dataset_id] += persons.num_rows if one_each else item.batch.num_rows
            yield persons

    try:
        if known is None:
            load_person_mentions(ws, person_batches())
        else:  # beside the state's mentions, numbered after them
            load_person_mentions(ws, person_batches(), known.first_row, "new_mention")
    finally:
        for writer in writers:
            writer.abandon()  # unfinished (a failure, or an empty partition): not kept
    ws.load_spilled("night_source_row", sources, _source_rows("", pa.array([], pa.string()), []))
    if known is not None:
        ws.load("changed_source", changed, _source_rows("", pa.array([], pa.string())))
        ws.load("gone_hash", _gone(known, seen), _source_rows("", None, np.zeros(0)))
    enterprise = pd.concat(_non_empty(enterprises, no_enterprise_mentions()), ignore_index=True)
    case = pd.concat(cases, ignore_index=True) if cases else pd.DataFrame(columns=case_columns)
    if cache is not None and known is None:
        cache.keep_only(cache_files)
    return NightMentions(enterprise, case, keys, cached_rows, frozenset(unread))


@dataclass
class _Rows:
    """A batch's source rows as the state will know them: keys and content hashes of a
    snapshot's rows (on an incremental night, of those the state does not hold, and the
    hashes of all in ``seen``), and on an incremental night the keys of the rows projected."""

    hashed: pa.Table | None = None
    changed: pa.Table | None = None
    seen: np.ndarray | None = None


def _gone(known: KnownRows, seen: dict[str, list[np.ndarray]]) -> Iterator[pa.Table]:
    """``(dataset, src_hash)`` of the snapshot rows the state holds that tonight's delivery
    does not hold as they were (changed or gone)."""
    for dataset_id, held in known.hashes.items():
        tonight = np.sort(np.concatenate(seen.get(dataset_id, [np.zeros(0, np.uint64)])))
        gone = held[~_member(held, tonight)]
        if len(gone):
            yield _source_rows(dataset_id, None, gone)


def _text_key(batch: pa.Table, dataset: DatasetDef) -> pa.Array:
    """The rows' keys as text, as the crosswalk's ``source_key`` holds them."""
    col = batch.column(dataset.key[0]).combine_chunks()
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _source_rows(
    dataset_id: str, source_key: pa.Array | None, hashes: np.ndarray | None = None
) -> pa.Table:
    """``(dataset[, source_key][, src_hash])`` rows of one batch."""
    n = len(source_key) if source_key is not None else len(hashes)
    columns = {"dataset": pa.repeat(pa.scalar(dataset_id, pa.string()), n)}
    if source_key is not None:
        columns["source_key"] = source_key
    if hashes is not None:
        columns["src_hash"] = pa.array(np.asarray(hashes, dtype=np.uint64), pa.uint64())
    return pa.table(columns)


def _member(values: np.ndarray, sorted_known: np.ndarray | None) -> np.ndarray:
    """Which ``values`` are in ``sorted_known`` (a sorted array; none when it is None).

    The values are looked up in their own sorted order: each search then starts near the
    last one's answer, in memory already cached (content hashes come in no order, and a
    random search of millions of hashes is mostly cache misses: about twice as slow)."""
    if sorted_known is None or not len(sorted_known):
        return np.zeros(len(values), dtype=bool)
    order = np.argsort(values)
    ordered = values[order]
    at = np.minimum(np.searchsorted(sorted_known, ordered), len(sorted_known) - 1)
    found = np.empty(len(values), dtype=bool)
    found[order] = sorted_known[at] == ordered
    return found


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


def load_person_mentions(
    ws: Workspace, batches: Iterable[pa.Table], first_row: int = 0, name: str = "person_mention"
) -> int:
    """``person_mention`` (or ``name``): the batches' rows numbered in order (``row``, from
    ``first_row``)."""
    offset = first_row

    def numbered() -> Iterator[pa.Table]:
        nonlocal offset
        for batch in batches:
            if batch.num_rows:
                rows = pa.array(np.arange(offset, offset + batch.num_rows), pa.int64())
                yield batch.append_column("row", rows)
                offset += batch.num_rows

    empty = empty_mentions().append_column("row", pa.array([], pa.int64()))
    ws.load_spilled(name, numbered(), empty)
    return ws.scalar(f"SELECT count(*) FROM {name}")


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
    """The five unified tables of a night and its figures: the person tables (millions of
    rows at full scale) are streamed from the workspace when they are written, the others
    are Arrow."""

    ws: Workspace
    tables: dict[str, pa.Table]
    figures: UnificationFigures
    streams: dict[str, Callable[[], Iterator[pa.RecordBatch]]]
    frozen: FrozenModel  # the model its persons were scored with

    def batches(self, name: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Table ``name`` in bounded record batches, as written (see :func:`_writable`)."""
        if name in self.tables:
            schema = _writable(self.tables[name].schema)
            batches = iter(self.tables[name].to_batches(BATCH_ROWS))
        else:
            batches = self.streams[name]()
            first = next(batches)
            schema = _writable(first.schema)
            batches = itertools.chain([first], batches)
        return schema, (b.cast(schema) for b in exact_batches(batches, BATCH_ROWS))

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables as pandas frames (small nights: tests, the demo's summary)."""
        frames = {name: table.to_pandas() for name, table in self.tables.items()}
        for name, stream in self.streams.items():
            frames[name] = pa.Table.from_batches(list(stream())).to_pandas()
        return frames


def number_persons(ws: Workspace) -> np.ndarray:
    """``person_number`` (each person's anchor and id, and ``k``: its place in id order) and
    each mention's ``k`` by row number: one join of the night's mentions with their persons,
    which both the person table and the crosswalk use."""
    n = ws.scalar("SELECT count(*) FROM person_mention")
    number_ids(ws, "person_ids")
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
    frozen: FrozenModel | None = None,
) -> UnifiedNight:
    """Resolve the workspace's person mentions and the night's enterprise mentions (a
    rebuild; with ``frozen``, scored with that model instead of one estimated tonight).

    The enterprises are linked on a second thread while the persons are resolved: pandas
    work beside the workspace's SQL, which leaves a core idle much of the time.
    """
    started = time.monotonic()
    with ThreadPoolExecutor(1) as beside:
        linking = beside.submit(resolve_enterprises, mentions.enterprises)
        people = resolve_persons(ws, frozen=frozen)
        clock = Stopwatch()
        stable_ids(ws, "person", previous_persons, PERSON_PREFIX)
        clock.lap("person_ids")
        resolved_at = time.monotonic()
        firms = linking.result()
    clock.lap("enterprise_links")  # the wait for them, if they are not done yet
    tables, firm_figures = enterprise_tables(ws, mentions, firms, previous_enterprises, clock)
    # the person table last: its columns are not held while the enterprises are worked on
    person_at = number_persons(ws)
    persons = unified_persons(ws, person_at)
    clock.lap("person_table")
    figures = _figures(
        ws,
        mentions,
        ds,
        firm_figures,
        persons=persons.num_rows,
        persons_with_id=pc.sum(persons.column("has_valid_id")).as_py() or 0,
        conflicts=people.conflicting_id_clusters,
        id_changes=ws.scalar("SELECT count(*) FROM person_id_before"),
        details={
            "candidate_pairs": int(len(people.candidates.left)),
            "pairs_per_blocking_rule": people.candidates.per_rule,
            "skipped_blocks": people.candidates.skipped_blocks,
            "weights": people.model.describe(),
            "seconds_persons": round(resolved_at - started, 1),
            "seconds_parts": {**people.seconds, **clock.laps},
            "seconds_total": round(time.monotonic() - started, 1),
        },
    )
    streams = {"person_xref": lambda: person_xref_batches(ws, person_at)}
    return UnifiedNight(ws, {"person": persons, **tables}, figures, streams, people.frozen)


def incremental_night(
    ws: Workspace,
    mentions: NightMentions,
    ds: date,
    frozen: FrozenModel,
    previous_enterprises: PreviousIds,
    stage_persons: Callable[[UnifiedNight], dict],
    discard: Callable[[list], None],
) -> tuple[UnifiedNight, dict]:
    """An incremental night (:mod:`etl.unify_incremental`): the kept state's persons updated
    by tonight's changes; the enterprises, a few hundred thousand rows, resolved whole.

    The person tables, final once the persons are updated, are staged (``stage_persons``,
    on their own connections) while the enterprise tables are built; returned with the
    night, or discarded if the enterprises fail.
    """
    started = time.monotonic()
    with ThreadPoolExecutor(1) as beside:
        linking = beside.submit(resolve_enterprises, mentions.enterprises)
        update = update_persons(ws, frozen)
        resolved_at = time.monotonic()
        firms = linking.result()
    streams = {
        "person": lambda: _state_batches(ws, STATE_PERSON),
        "person_xref": lambda: _state_batches(ws, STATE_XREF, keep_order=True),
    }
    clock = Stopwatch()
    with ThreadPoolExecutor(1) as writer:
        early = writer.submit(stage_persons, UnifiedNight(ws, {}, None, streams, frozen))
        try:
            clock.lap("enterprise_links")
            tables, firm_figures = enterprise_tables(
                ws, mentions, firms, previous_enterprises, clock
            )
        except BaseException:
            if early.exception() is None:
                discard(list(early.result().values()))
            raise
    early_staged = early.result()
    counted = {**mentions.clean_rows}
    for dataset_id in mentions.unread:  # its older partitions were the state's: count there
        counted[dataset_id] = ws.scalar(
            "SELECT count(*) FROM mention WHERE dataset = ? AND role = ?", [dataset_id, SUBJECT]
        )
    persons, with_id = ws.con.execute(
        "SELECT count(*), coalesce(sum(has_valid_id::INTEGER), 0) FROM person"
    ).fetchall()[0]
    figures = _figures(
        ws,
        NightMentions(mentions.enterprises, mentions.cases, counted, 0, mentions.unread),
        ds,
        firm_figures,
        persons=persons,
        persons_with_id=with_id,
        conflicts=update.conflicting_id_clusters,
        id_changes=update.id_changes,
        details={
            "incremental": update.describe(),
            "candidate_pairs": int(len(update.candidates.left)),
            "pairs_per_blocking_rule": update.candidates.per_rule,
            "skipped_blocks": update.candidates.skipped_blocks,
            "weights": frozen.model.describe(),
            "model_estimated_on": str(frozen.estimated_on),
            "seconds_persons": round(resolved_at - started, 1),
            "seconds_parts": {**update.seconds, **clock.laps},
            "seconds_total": round(time.monotonic() - started, 1),
        },
    )
    return UnifiedNight(ws, tables, figures, streams, frozen), early_staged


# the person table from the kept state in id order, as a rebuild writes it
STATE_PERSON = "SELECT * FROM person ORDER BY CAST(substr(person_id, 2) AS BIGINT)"
# the person crosswalk from the kept state: tonight's id changes as its previous ids
STATE_XREF = f"""
    SELECT {", ".join(f"m.{c}" for c in XREF_COLUMNS)}, m.person_id,
           b.previous_id AS previous_person_id
    FROM mention m LEFT JOIN region_id_before b USING (row)
"""


def _state_batches(ws: Workspace, sql: str, keep_order: bool = False) -> Iterator[pa.RecordBatch]:
    """A query's rows in record batches, on a connection of its own (the person tables are
    written side by side); ``keep_order``: in the state's own row order."""
    con = ws.con.cursor()
    try:
        if keep_order:
            con.execute("SET preserve_insertion_order = true")
        yield from con.sql(sql).to_arrow_reader(BATCH_ROWS)
    finally:
        con.close()


def enterprise_tables(
    ws: Workspace,
    mentions: NightMentions,
    firms,
    previous_enterprises: PreviousIds,
    clock: Stopwatch,
) -> tuple[dict[str, pa.Table], dict]:
    """The enterprise, enterprise crosswalk and case tables, and their figures.

    Reads the persons' ``person_ids``, ``id_merged`` and ``person_assigned`` (for legal
    representatives, owners and applicants), whichever way the persons were resolved.
    """
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
    figures = {
        "enterprises": len(enterprises),
        "unlinked_enterprises": int((~enterprises["linked"]).sum()),
        "enterprise_rows": len(enterprise_xref),
        "enterprise_rules": {
            str(k): int(v)
            for k, v in enterprise_xref["match_rule"].value_counts().sort_index().items()
        },
        "enterprise_changes": int(enterprise_xref["previous_enterprise_id"].notna().sum()),
        "enterprise_fallback": firms.fuzzy.as_dict(),  # what the name-and-address fallback compared
    }
    clock.lap("enterprise_tables")
    return tables, figures


def _figures(
    ws: Workspace,
    mentions: NightMentions,
    ds: date,
    firms: dict,
    *,
    persons: int,
    persons_with_id: int,
    conflicts: int,
    id_changes: int,
    details: dict,
) -> UnificationFigures:
    """The night's figures from ``person_assigned`` (either way) and the enterprises'."""
    firms = dict(firms)
    firm_changes, fallback = firms.pop("enterprise_changes"), firms.pop("enterprise_fallback")
    person_rules = _counts(ws, "person_assigned", "match_rule")
    return UnificationFigures(
        ds=ds,
        clean_rows=sum(mentions.clean_rows.values()),
        subject_rows=ws.scalar("SELECT count(*) FROM person_assigned WHERE role = ?", [SUBJECT])
        + firms["enterprise_rows"],
        persons=persons,
        persons_with_id=persons_with_id,
        person_rows=sum(person_rules.values()),
        person_rules=person_rules,
        **firms,
        conflicting_id_clusters=conflicts,
        id_changes=id_changes + firm_changes,
        details={
            **details,
            "enterprise_fallback": fallback,
            "clean_rows": mentions.clean_rows,
            "mentions_from_cache": mentions.cached_rows,
        },
    )


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
    state_dir: Path | None = None,
    rebuild_days: int = DEFAULT_UNIFY_REBUILD_DAYS,
    full: bool = False,
    rebuild_lock: Callable[[], AbstractContextManager] = nullcontext,
) -> UnificationFigures:
    """The step: read the night's clean partitions, unify, commit five tables, record figures.

    The work happens in a DuckDB workspace under ``scratch`` (a private file, removed after),
    so memory stays near ``memory_limit`` plus the enterprise frames whatever the night's size.
    With ``state_dir`` the night keeps its state for the next one, and starts from the kept
    state when it matches the lake (:mod:`etl.unify_state`): only tonight's changes are then
    resolved (:mod:`etl.unify_incremental`). A rebuild (``full``, or no usable state) uses
    the kept model while it is younger than ``rebuild_days`` nights, so that it gives what
    the incremental night gives (a rerun of a night equals its first run). A rebuild runs
    inside ``rebuild_lock`` (the night's heavy-step lock: it needs most of the memory).
    """
    prev = previous_night(store, ds)
    started = time.monotonic()
    state = UnifyState(state_dir) if state_dir is not None else None
    mark, why = (
        (None, "no state kept")
        if state is None
        else state.usable(catalog, store, ds, prev, rebuild_days)
    )
    if full:
        mark, why = None, "a rebuild was asked for"
    frozen = None if state is None else state.kept_model(store, ds, rebuild_days)
    writes, early = Stopwatch(), {}
    with (
        nullcontext() if mark is not None else rebuild_lock(),
        workspace(scratch, memory_limit, database=state.copy_into if mark else None) as ws,
    ):
        if mark is not None:
            known = _known_rows(ws, mark)
            mentions = read_mentions(ws, catalog, ds, lake, store, None, known)
            read_at = time.monotonic()
            night, early = incremental_night(
                ws,
                mentions,
                ds,
                frozen,
                previous_ids(lake, prev, "enterprise"),
                lambda persons: _stage_tables(lake, persons, ds, prev, writes, 2, PERSON_NAMES),
                lake.discard,
            )
        else:
            cache = MentionCache(mention_cache) if mention_cache else None
            mentions = read_mentions(ws, catalog, ds, lake, store, cache)
            read_at = time.monotonic()
            night = unified_night(
                ws,
                mentions,
                ds,
                previous_ids(lake, prev, "person"),
                previous_ids(lake, prev, "enterprise"),
                frozen,
            )
        figures, staged = night.figures, list(early.values())
        writes.restart()  # the early tables timed themselves
        try:
            if not figures.conserved:
                raise PartitionError(
                    f"unification {ds}: {figures.clean_rows:,} clean rows but "
                    f"{figures.subject_rows:,} subject rows in the crosswalks: nothing written"
                )
            if state is not None and mark is None:  # the rebuild's state, before its tables go
                state.write_next(ws, _rebuilt_state(ws, night))
                writes.lap("write_state")
            rest = [t for t in TABLES if t not in early]
            by_name = {**early, **_stage_tables(lake, night, ds, prev, writes, 1, rest)}
            writes.lap("write_tables")
            staged = [by_name[name] for name in TABLES]
            if state is not None:
                written = {
                    f"unified.{n}": one.manifest.fingerprint
                    for n, one in zip(TABLES, staged, strict=True)
                }
                next_mark = StateMark(
                    ds=ds,
                    fingerprints={n: written[n] for n in PERSON_TABLES},
                    code=state_code(),
                    model=night.frozen.describe(),
                    model_on=night.frozen.estimated_on or ds,
                    partitions=clean_fingerprints(catalog, store, ds),
                )
                if mark is not None:
                    state.keep_next(ws, next_mark)
                else:
                    state.mark_next(next_mark)
                writes.lap("keep_state" if mark is not None else "mark_state")
        except BaseException:
            lake.discard(staged)
            if state is not None:
                state.discard_next()
            raise
        written_at = time.monotonic()
    lake.commit(staged, run_id=run_id)
    if state is not None:
        state.publish_next()  # after the lake's commit: a killed night leaves the old state
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
    details = {**figures.details, **seconds, "how": "incremental" if mark else f"rebuild: {why}"}
    details["seconds_parts"] = {**details["seconds_parts"], **writes.laps}
    figures = UnificationFigures(**{**figures.__dict__, "details": details, "run_id": run_id})
    store.record_unification(run_id, figures)
    return figures


def _stage_tables(
    lake: Lake,
    night: UnifiedNight,
    ds: date,
    prev: date | None,
    writes: Stopwatch,
    workers: int,
    names: Iterable[str] = TABLES,
) -> dict:
    """Stage the five tables, ``workers`` at a time (an incremental night writes the person
    table and its crosswalk, millions of rows each, side by side: Parquet encoding and
    DuckDB let go of the GIL; a rebuild one after the other, its person table held in
    memory and its crosswalk assembled as it is written). Returns them by name; if one
    fails, the others staged are discarded."""

    def stage(name: str):
        started = time.monotonic()
        schema, batches = night.batches(name)
        one = lake.stage_partition(
            lake.unified_partition(name, ds),
            batches,
            schema,
            private=True,
            extra={"previous_night": prev.isoformat() if prev else None},
        )
        night.tables.pop(name, None)  # written: not held while the others are
        writes.laps[f"write_{name}"] = round(time.monotonic() - started, 1)
        return one

    with ThreadPoolExecutor(workers) as pool:
        futures = {name: pool.submit(stage, name) for name in names}
    failed = [f.exception() for f in futures.values() if f.exception() is not None]
    if failed:
        lake.discard([f.result() for f in futures.values() if f.exception() is None])
        raise failed[0]
    return {name: future.result() for name, future in futures.items()}


def _known_rows(ws: Workspace, mark: StateMark) -> KnownRows:
    """What the kept state holds, for :func:`read_mentions`."""
    hashes = {}
    for dataset_id in ws.frame("SELECT DISTINCT dataset FROM source_row")["dataset"]:
        query = "SELECT src_hash FROM source_row WHERE dataset = ?"
        hashes[str(dataset_id)] = np.sort(ws.frame(query, [dataset_id])["src_hash"].to_numpy())
    return KnownRows(
        hashes=hashes,
        partitions={d: len(f) for d, f in mark.partitions.items()},
        first_row=ws.scalar("SELECT coalesce(max(row), -1) + 1 FROM mention"),
    )


def _rebuilt_state(ws: Workspace, night: UnifiedNight) -> dict[str, str]:
    """The queries that fill a rebuild's state (:mod:`etl.unify_state`) from its workspace."""
    ws.con.register("rebuilt_person", night.tables["person"])
    return {
        "mention": """
            SELECT a.*, n.id AS person_id FROM person_assigned a JOIN person_number n USING (anchor)
        """,
        "link": "SELECT row, partner, weight FROM person_link",
        "person": "SELECT * FROM rebuilt_person",
        "id_merged": "SELECT * FROM id_merged",
        "person_name": "SELECT * FROM person_name",
        "source_row": "SELECT * FROM night_source_row",
    }


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
