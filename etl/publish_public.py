"""Open data: de-identified microdata behind the k-anonymity gate (DESIGN §6, issue 12).

Pure functions (a clean table in, a public table and its figures out) and, at the end, the
I/O shell :func:`publish_open_data` that the night's ``publish_public`` step calls:

1. every open-able dataset (``open_type`` not restricted): the current clean rows → fields
   by the public rules (``masking.policy.public_treatment``) → the k-anonymity gate on the
   catalog's quasi-identifiers (``masking.kanon``), capped where the catalog says; a dataset
   the gate blocks keeps its previous publication;
2. the 数字邑门式 statistics (``etl/statistics.py``), small cells suppressed;
3. every staged table read back and leak-scanned (``masking.leak_scan``): one finding and
   nothing of the night is published;
4. the partitions are committed, recorded with their lineage, and ``catalog.jsonld`` and
   ``index.html`` are rewritten from what the public zone now holds.

Until unification lands, the input is ``raw/clean`` (see docs/public.md). A table whose
inputs did not change keeps its publication (decision 0016); an incremental source's
current state is kept between nights and a night stacks only its new partitions on it
(``etl/public_state.py``, decision 0021).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from catalog.definitions import Catalog, DatasetDef, FieldDef
from catalog.errors import LakeError, PublicationBlocked
from catalog.files import code_digest
from catalog.store import CatalogStore, PartitionRecord
from etl.public_state import KeptState, PublicStateCache
from etl.zones import (
    PUBLIC,
    RAW_CLEAN,
    Lake,
    Manifest,
    StagedPartition,
    excel_csv,
    replace_file,
    stage_delivery,
)
from masking.kanon import (
    Hierarchy,
    KAnonResult,
    birth_year_hierarchy,
    hierarchy_for,
    k_anonymise,
)
from masking.leak_scan import CANDIDATE_IN_LINE_RE2, CANDIDATE_RE2, scan_table
from masking.policy import Treatment, output_metadata, public_treatment, treated_columns

log = logging.getLogger(__name__)


class LeakFound(LakeError):
    """The leak scan found personal data in the public output: nothing was published."""


# --------------------------------------------------------------------------- public rules


def public_fields(dataset: DatasetDef) -> list[tuple[FieldDef, Treatment]]:
    """The fields a dataset publishes, with their public treatment (DESIGN §6 through
    ``masking.policy.public_treatment``: open clear, restricted dropped, ID/name/phone
    dropped, address → district code, birth date → year, amount → band …). Dropped fields
    and the catalog's ``public.exclude`` are left out; the public zone has no tokens."""
    excluded = set(dataset.public.exclude)
    kept = []
    for f in dataset.fields:
        treatment = public_treatment(f)
        if f.name in excluded or treatment.dropped:
            continue
        if treatment.tokenised:  # the policy never does this; the public zone must not
            raise LakeError(f"{dataset.id}.{f.name}: a token in the public zone")
        kept.append((f, treatment))
    return kept


def _is_birth_year(treatment: Treatment) -> bool:
    return any(o.operator.variant == "generalise.year" for o in treatment.outputs)


def public_table(dataset: DatasetDef, clean: pa.Table) -> pa.Table:
    """The clean rows with the public treatments applied: no ID, name, phone, token or
    metadata column. Every column's Parquet metadata says its level, PII kind and the
    operator applied (``masking.policy.output_metadata``, plus ``masking``: its variant)."""
    arrays, fields = [], []
    for f, treatment in public_fields(dataset):
        outputs = {o.column: o for o in treatment.outputs}
        ruled = _ruled_column(f)
        if ruled in clean.column_names:  # the rule applied as the rows were read (0021)
            treated = {treatment.outputs[0].column: clean.column(ruled).combine_chunks()}
        else:
            treated = treated_columns(treatment, clean.column(f.name).combine_chunks())
        for column, array in treated.items():
            output = outputs[column]
            meta = output_metadata(f, output) | {"masking": output.operator.variant}
            arrays.append(array)
            fields.append(pa.field(column, array.type, metadata=meta))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# Public rules applied to the clean rows as they are read, and kept with the state instead
# of the field they read (decision 0021): rules of one row's value alone (an address names
# one district whatever the night), and the costly one over millions of addresses
ROW_RULES = frozenset({"generalise.district", "generalise.district_code"})


def _ruled_column(f: FieldDef) -> str:
    return f"{f.name}.public"


def _row_rules(dataset: DatasetDef) -> dict[str, tuple[FieldDef, Treatment]]:
    """The state's ruled columns (``<field>.public``) and the field and rule of each."""
    return {
        _ruled_column(f): (f, treatment)
        for f, treatment in public_fields(dataset)
        if len(treatment.outputs) == 1 and treatment.outputs[0].operator.variant in ROW_RULES
    }


def _with_row_rules(dataset: DatasetDef, part: pa.Table, names: list[str]) -> pa.Table:
    """``part`` with the row rules applied and, of the fields they read, none left."""
    for column, (f, treatment) in _row_rules(dataset).items():
        (array,) = treated_columns(treatment, part.column(f.name).combine_chunks()).values()
        part = part.append_column(column, array)
    return part.select(names)


# --------------------------------------------------------------------------- k-anonymity


def public_hierarchies(dataset: DatasetDef) -> dict[str, Hierarchy]:
    """The gate's quasi-identifiers: the published QI fields, capped where the catalog says."""
    hierarchies = {}
    for f, treatment in public_fields(dataset):
        if not f.quasi_identifier:
            continue
        hierarchy = birth_year_hierarchy(f.name) if _is_birth_year(treatment) else hierarchy_for(f)
        cap = dataset.public.generalise_up_to.get(f.name)
        hierarchies[f.name] = hierarchy.up_to(cap) if cap else hierarchy
    return hierarchies


def anonymised(dataset: DatasetDef, table: pa.Table) -> KAnonResult:
    """The k-anonymity gate with the dataset's k and suppression limit; blocks past it."""
    result = k_anonymise(
        table,
        public_hierarchies(dataset),
        k=dataset.public.k,
        max_suppression=dataset.public.max_suppression,
        dataset=dataset.id,
    )
    # a generalised column comes back as a new (text) field: give it its metadata back,
    # with the level the gate chose
    fields = []
    for f in result.table.schema:
        meta = dict(table.schema.field(f.name).metadata or {})
        if f.name in result.levels:
            meta[b"kanon_level"] = result.levels[f.name].encode()
        fields.append(f.with_metadata(meta))
    published = pa.Table.from_arrays(result.table.columns, schema=pa.schema(fields))
    return dataclasses.replace(result, table=published)


# --------------------------------------------------------------------------- files


def parquet_bytes(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", row_group_size=250_000)
    return out.getvalue()


def delivery_files(name: str, table: pa.Table) -> dict[str, bytes]:
    """``<name>.parquet`` and ``<name>.csv`` of one public table."""
    stem = name.rsplit("/", 1)[-1]
    # the two are built side by side: Arrow's writers and kernels let go of the GIL, and
    # the night's other core is otherwise mostly idle here
    with ThreadPoolExecutor(1) as pool:
        parquet = pool.submit(parquet_bytes, table)
        text = public_csv(table)
        return {f"{stem}.parquet": parquet.result(), f"{stem}.csv": text}


def public_csv(table: pa.Table) -> bytes:
    """The table as ``zones.excel_csv`` writes it (UTF-8 with BOM, CRLF, formula-safe), byte
    for byte, built with Arrow kernels instead of pandas ``to_csv``: each cell's text as
    pandas prints it, quoted where the csv module would, the rows joined in one buffer.
    pandas' writer took a third of publishing's CPU. A table with a column whose pandas text
    is not matched here (a zoned or sub-second timestamp, a float Python would print in
    exponent form, a single column) is written by ``excel_csv`` itself.
    ``tests/test_publish_public_csv.py`` holds the two to the same bytes."""
    cells = [_csv_cells(c.combine_chunks()) for c in table.columns] if table.num_columns > 1 else []
    if not cells or any(column is None for column in cells):
        return excel_csv(table)
    header = ",".join(_csv_quoted(pa.array(table.column_names)).to_pylist()) + "\r\n"
    head = b"\xef\xbb\xbf" + header.encode()
    if not table.num_rows:
        return head
    return b"".join([head, _joined_buffer(_csv_lines(cells))])  # the rows copied once


@dataclass(frozen=True)
class _Cells:
    """A column's cells as the CSV holds them: ``text`` per row, or (a column of few
    values) ``text`` per distinct value, the last one "" for NULL, and each row's ``rows``."""

    text: pa.Array
    rows: np.ndarray | None = None

    def per_row(self) -> pa.Array:
        return self.text if self.rows is None else self.text.take(self.rows)


def _csv_lines(cells: list[_Cells]) -> pa.Array:
    """Each row's line (cells joined by commas, CRLF at the end).

    When every column has few values (the population: sex, birth year, district, status …),
    the rows hold few distinct combinations of them: each combination's line is built once
    and taken per row, instead of every cell of millions of rows joined."""
    combinations = 1
    for column in cells:
        combinations *= len(column.text) if column.rows is not None else 2**63
    if combinations < 2**62:
        code = np.zeros(len(cells[0].rows), dtype=np.int64)
        for column in cells:
            code = code * len(column.text) + column.rows
        encoded = pa.array(code).dictionary_encode()
        distinct, parts = encoded.dictionary.to_numpy(), []
        for column in reversed(cells):
            distinct, which = np.divmod(distinct, len(column.text))
            parts.append(_Cells(column.text, which))
        lines = _joined_lines(parts[::-1])
        rows = encoded.indices.to_numpy()
        size = int(pc.binary_length(lines).to_numpy()[rows].sum())
        return (lines.cast(pa.large_string()) if size >= 2**31 else lines).take(rows)
    return _joined_lines(cells)


def _joined_lines(cells: list[_Cells]) -> pa.Array:
    columns = [c.per_row() for c in cells]
    # 64-bit offsets only where the file could pass 2 GB
    kind = pa.large_string() if sum(c.nbytes for c in columns) > 2**30 else pa.string()
    columns = [c.cast(kind) for c in columns]
    line = pc.binary_join_element_wise(*columns, pa.scalar(",", kind))
    return pc.binary_join_element_wise(line, pa.scalar("", kind), pa.scalar("\r\n", kind))


def _csv_cells(values: pa.Array) -> _Cells | None:
    """A column's cells as the CSV holds them (text, quoted), or None (see ``_csv_text``).

    A column of few distinct values (sex, district, status, a birth year: most public
    columns over millions of rows) is written once per distinct value and then taken per
    row; the sample of its first rows says which."""
    few = len(values) > 10_000 and pc.count_distinct(values.slice(0, 10_000)).as_py() < 2_500
    if few:
        encoded = values.dictionary_encode()
        if len(encoded.dictionary) * 4 < len(values):
            text = _csv_text(encoded.dictionary)
            if text is None:
                return None
            text = pa.concat_arrays([_quoted_text(values.type, text), pa.array([""])])
            rows = pc.fill_null(encoded.indices, len(text) - 1).to_numpy().astype(np.int64)
            return _Cells(text, rows)
    text = _csv_text(values)
    return None if text is None else _Cells(_quoted_text(values.type, text))


def _quoted_text(kind: pa.DataType, text: pa.Array) -> pa.Array:
    """The cells of a column of type ``kind`` quoted: only text can hold a comma, a quote or
    a line break; numbers, dates and timestamps as written hold none."""
    return _csv_quoted(text).cast(pa.string()) if pa.types.is_string(kind) else text


def _csv_text(values: pa.Array) -> pa.Array | None:
    """A column's cells as pandas ``to_csv`` prints them (NULL as empty), or None when this
    column's type or values are not matched here (``values`` may be the distinct values)."""
    kind = values.type
    valid = values.drop_null()
    if pa.types.is_string(kind):
        # a text cell a spreadsheet would run as a formula gets an apostrophe (excel_csv)
        risky = pc.fill_null(pc.match_substring_regex(values, r"^[=+\-@]"), False)
        text = values
        if pc.any(risky).as_py():
            text = pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)
    elif pa.types.is_boolean(kind):
        text = pc.if_else(values, "True", "False")
    elif pa.types.is_integer(kind):
        text = values.cast(pa.string())  # a whole number, NULLs beside it or not
    elif pa.types.is_floating(kind):
        magnitude = pc.abs(valid.cast(pa.float64()))
        odd = pc.or_(pc.greater_equal(magnitude, 1e10), pc.less(magnitude, 1e-4))
        if len(valid) and (
            pc.any(pc.and_(odd, pc.not_equal(magnitude, 0))).as_py()
            or pc.any(pc.is_nan(valid)).as_py()
        ):
            return None  # where Python and Arrow choose the exponent form apart; nan, inf
        text = values.cast(pa.string())
        whole = pc.fill_null(pc.match_substring_regex(text, r"^-?[0-9]+$"), False)
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    elif pa.types.is_date32(kind) or (pa.types.is_decimal(kind) and kind.scale >= 0):
        text = values.cast(pa.string())  # as str() of a date, of a Decimal
    elif pa.types.is_timestamp(kind) and kind.tz is None:
        ticks = valid.cast(pa.int64()).to_numpy()
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[kind.unit]
        if (ticks % per_second).any():
            return None  # pandas prints a fraction of a second on every row
        dates = not (ticks % (86_400 * per_second)).any()  # pandas prints dates alone then
        seconds = values.cast(pa.timestamp("s"))
        first, last = (
            (ticks.min() // per_second, ticks.max() // per_second) if len(ticks) else (0, 0)
        )
        if not _FOUR_DIGIT_YEARS[0] <= first <= last < _FOUR_DIGIT_YEARS[1]:
            text = pc.strftime(seconds, format="%Y-%m-%d" if dates else "%Y-%m-%d %H:%M:%S")
        else:  # the same text as strftime's, eight times faster
            text = (seconds.cast(pa.date32()) if dates else seconds).cast(pa.string())
    else:
        return None
    return pc.fill_null(text, "") if text.null_count else text


# seconds since 1970 of 1000-01-01 and 10000-01-01: Arrow's cast of a timestamp to text
# is strftime's "%Y-%m-%d %H:%M:%S" between them
_FOUR_DIGIT_YEARS = (-30_610_224_000, 253_402_300_800)


def _csv_quoted(text: pa.Array) -> pa.Array:
    """Quoted as the csv module does (QUOTE_MINIMAL): a cell with a comma, a quote or a line
    break in double quotes, its quotes doubled."""
    needs = pc.match_substring_regex(text, r'[,"\r\n]')
    if not pc.any(needs).as_py():
        return text
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, text)


def _joined_buffer(lines: pa.Array) -> pa.Buffer:
    """The values of a string array end to end: its data buffer between the first and the
    last offset (no copy)."""
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=width)[lines.offset :]
    start, end = int(offsets[0]), int(offsets[len(lines)])
    return lines.buffers()[2].slice(start, end - start)


def temporal_coverage(table: pa.Table) -> list[str] | None:
    """First and last day of the first date/time column, as ISO dates (DCAT temporal)."""
    for column in table.columns:
        if pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
            days = pc.min_max(column.cast(pa.timestamp("s")).cast(pa.date32()))
            if days["min"].is_valid:
                return [days["min"].as_py().isoformat(), days["max"].as_py().isoformat()]
    return None


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CleanState:
    """A dataset's current clean rows as of a date, and the partitions they came from."""

    table: pa.Table
    inputs: list[str]


def clean_inputs(
    lake: Lake, store: CatalogStore, dataset: DatasetDef, ds: date
) -> list[PartitionRecord]:
    """The committed clean partitions the dataset's current state as of ``ds`` is made of:
    a snapshot source's latest one, an incremental source's every one up to ``ds``."""
    records = [
        p
        for p in store.partitions(zone=RAW_CLEAN)
        if p.dataset_id == dataset.id and p.ds <= ds and lake.read_manifest(p.path) is not None
    ]
    if not records:
        raise LakeError(f"{dataset.id}: no clean partition on or before {ds} to publish from")
    records.sort(key=lambda p: p.ds)
    return records[-1:] if dataset.source.load == "snapshot" else records


def current_clean(
    lake: Lake,
    store: CatalogStore,
    dataset: DatasetDef,
    ds: date,
    columns: Sequence[str] | None = None,
    kept: PublicStateCache | None = None,
    row_rules: bool = False,
) -> CleanState:
    """The newest clean version of every key as of ``ds`` (only ``columns``, if given).

    A snapshot source's latest clean partition is the whole state; an incremental source's
    partitions hold each night's changes, so they are stacked and the newest row per key
    kept (later date first, then ``updated_at``). Rows deleted at the source stay until
    unification handles deletions.

    With ``kept``, an incremental source's state starts from the one an earlier night
    computed and kept there, made of the first of tonight's partitions, and stacks only
    the partitions after it; tonight's state is kept in its place when none was usable or
    the stack on it has grown (:data:`KEPT_REWRITE_SHARE`; decision 0021).

    With ``row_rules``, the public rules of :data:`ROW_RULES` are applied to each partition
    as it is read: the state holds ``<field>.public`` (the district) instead of the field
    (the address), so a night applies them to its new rows only.
    """
    records = clean_inputs(lake, store, dataset, ds)
    read = list(columns or dataset.field_names)
    ruled = _row_rules(dataset) if row_rules else {}
    names = [n for n in read if n not in {f.name for f, _ in ruled.values()}] + list(ruled)

    def clean_part(record: PartitionRecord) -> pa.Table:
        part = _read_columns(lake, record.path, read)
        return _with_row_rules(dataset, part, names) if ruled else part

    keeps = kept is not None and dataset.source.load != "snapshot"
    made_of = [list(i) for i in _inputs_of(records)]
    start = kept.read(dataset, names, made_of) if keeps and len(records) > 1 else None
    parts = []
    if start is not None:
        since = [r for r in records if r.rows][len(start.inputs) :]
        parts = [start.table, *(clean_part(r) for r in since)]
        if any(not p.schema.equals(start.table.schema) for p in parts):
            start = None
    if start is None:
        parts = [clean_part(record) for record in records]
    if start is not None and len(parts) == 1:
        table = start.table  # nothing new since: already the newest row per key
    else:
        table = _newest_per_key(_stacked(parts), dataset) if len(parts) > 1 else parts[0]
    stacked = sum(p.num_rows for p in parts[1:]) if start is not None else None
    if keeps and (stacked is None or _rewrite_kept(start, stacked, len(parts) - 1)):
        # the state as the next night's stack starts from it: newest per key, key order
        as_kept = table if len(records) > 1 else _newest_per_key(_stacked(parts), dataset)
        kept.write(dataset, names, ds, KeptState(as_kept.select(names), made_of))
    return CleanState(table.select(names), [p.path for p in records])


# A kept state is written again once what is stacked on it is this share of its rows, or
# this many partitions: writing it costs more than stacking one night on it (0021)
KEPT_REWRITE_SHARE, KEPT_REWRITE_PARTS = 0.1, 7


def _rewrite_kept(start: KeptState, stacked_rows: int, stacked_parts: int) -> bool:
    """Whether tonight's state replaces the kept one it started from (see above)."""
    return (
        stacked_rows > KEPT_REWRITE_SHARE * start.table.num_rows
        or stacked_parts >= KEPT_REWRITE_PARTS
    )


def _stacked(parts: Sequence[pa.Table]) -> pa.Table:
    """The parts one above the other, each row with its part's place (``_night``)."""
    return pa.concat_tables(
        part.append_column("_night", pa.repeat(pa.scalar(order, pa.int32()), len(part)))
        for order, part in enumerate(parts)
    )


def _read_columns(lake: Lake, path: str, names: list[str]) -> pa.Table:
    """Only the columns a publication reads (not the IDs, names or phones it drops)."""
    tables = list(lake.partition_batches(path, columns=names))
    if not tables:
        return lake.read_partition(path).select(names)
    return pa.concat_tables(tables).select(names)


def _newest_per_key(table: pa.Table, dataset: DatasetDef) -> pa.Table:
    """The first row per key in the order key, night (newest first), watermark (newest
    first): the order is computed as indices, the keys compared in it, and only the kept
    rows taken (not the whole table sorted, then filtered)."""
    order = [(k, "ascending") for k in dataset.key] + [("_night", "descending")]
    watermark = dataset.source.watermark_column
    if watermark:
        order.append((watermark, "descending"))
    indices = pc.sort_indices(table, sort_keys=order)
    keys = [table.column(k).take(indices).combine_chunks() for k in dataset.key]
    first = np.ones(len(table), dtype=bool)
    if len(table) > 1:
        same = np.ones(len(table) - 1, dtype=bool)
        for key in keys:
            a, b = key.slice(1), key.slice(0, len(key) - 1)
            same &= pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)
        first[1:] = ~same
    return table.take(indices.filter(pa.array(first)))


# --------------------------------------------------------------------------- the shell


@dataclass
class StagedTable:
    """A public table staged beside its final path, with what the catalogue says of it."""

    name: str  # public/<name>/dt=…
    staged: StagedPartition
    inputs: list[str]
    report: dict = field(default_factory=dict)
    exempt: list[str] = field(default_factory=list)  # leak-scan exemptions (15-digit reg. no.)


@dataclass
class PublicationResult:
    published: dict[str, dict] = field(default_factory=dict)  # name → report
    blocked: dict[str, str] = field(default_factory=dict)  # name → reason (one line)
    unchanged: dict[str, str] = field(default_factory=dict)  # name → date it was published
    # what each part cost (wall and CPU seconds: "<dataset> state", "… microdata", "scan" …),
    # for bench/bench_public.py; not part of the summary
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            before = self.seconds.get(what, (0.0, 0.0))
            spent = (time.perf_counter() - wall, time.process_time() - cpu)
            self.seconds[what] = (before[0] + spent[0], before[1] + spent[1])

    def summary(self) -> dict:
        return {"published": self.published, "blocked": self.blocked, "unchanged": self.unchanged}


# Part of every public table's input signature: the code that decides what the same clean
# rows publish, so a change to it rebuilds every table instead of keeping any (0016)
PUBLISH_MODULES = (
    "etl.publish_public",
    "etl.statistics",
    "masking.policy",
    "masking.kanon",
    "masking.operators",
)


def input_signature(*parts: object) -> str:
    """A digest of everything a public table is computed from (decision 0016)."""
    text = json.dumps([code_digest(*PUBLISH_MODULES), *parts], sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _inputs_of(records: Sequence[PartitionRecord]) -> list[tuple[str, str]]:
    """The clean partitions a state is made of; an empty one (a night an incremental
    source delivered nothing) adds nothing to it, so it changes no signature."""
    return [(r.path, r.fingerprint) for r in records if r.rows]


class _Previous:
    """The latest committed publication of every public table on or before the night."""

    def __init__(self, lake: Lake, store: CatalogStore, ds: date) -> None:
        self.manifests: dict[str, Manifest] = {}
        self.dates: dict[str, date] = {}
        latest = {}
        for record in store.partitions(zone=PUBLIC):
            if record.ds <= ds:
                latest[record.dataset_id] = record  # partitions() is ordered by date
        for name, record in latest.items():
            manifest = lake.read_manifest(record.path)
            if manifest is not None:
                self.manifests[name], self.dates[name] = manifest, record.ds

    def same(self, name: str, signature: str) -> bool:
        manifest = self.manifests.get(name)
        return manifest is not None and manifest.extra.get("input_signature") == signature

    def statistics_of(self, source: str) -> list[str]:
        """The statistics tables published from ``source`` alone."""
        return [
            name
            for name, m in self.manifests.items()
            if m.extra.get("kind") == "statistics" and m.extra.get("sources") == [source]
        ]


def publish_open_data(
    catalog: Catalog,
    lake: Lake,
    store: CatalogStore,
    ds: date,
    run_id: str,
    *,
    full: bool = False,
    state_dir: Path | None = None,
) -> PublicationResult:
    """The night's open-data publication (see the module doc for the order of gates).

    A table whose inputs are the same as those of its latest publication (the same clean
    partitions, catalog definition and rules: :func:`input_signature`) is not rebuilt: it
    keeps that publication, which the catalogue goes on listing (decision 0016). ``full``
    rebuilds every table.
    """
    from catalog.dcat import dcat_catalogue
    from catalog.portal import portal_page, vendored_assets
    from etl.public_catalogue import published_entries
    from etl.statistics import STAT_COLUMNS, statistics_signature_parts, statistics_tables

    result = PublicationResult()
    kept = PublicStateCache(state_dir) if state_dir is not None else None
    previous = _Previous(lake, store, ds)
    openable = [d for d in catalog.datasets if d.openable]
    inputs = {d.id: clean_inputs(lake, store, d, ds) for d in openable}
    signatures = {
        d.id: input_signature("microdata", d.model_dump(mode="json"), _inputs_of(inputs[d.id]))
        for d in openable
    }
    stat_signatures = {
        d.id: input_signature(
            "statistics", statistics_signature_parts(catalog, d.id, ds), _inputs_of(inputs[d.id])
        )
        for d in openable
        if d.id in STAT_COLUMNS
    }
    rebuilt = {d.id for d in openable if full or not previous.same(d.id, signatures[d.id])}
    stats_rebuilt = {
        source
        for source, signature in stat_signatures.items()
        if full
        or not previous.statistics_of(source)
        or not all(previous.same(n, signature) for n in previous.statistics_of(source))
    }
    staged: list[StagedTable] = []
    try:
        # one dataset at a time: its current state read, its microdata and statistics
        # staged, the state let go before the next is read (the largest, not the sum of
        # all, in memory)
        for dataset in openable:
            if dataset.id not in rebuilt | stats_rebuilt:
                continue
            with result.timed(f"{dataset.id} state"):
                state = current_clean(
                    lake, store, dataset, ds, _needed_columns(dataset), kept, row_rules=True
                )
            if dataset.id in rebuilt:
                try:
                    with result.timed(f"{dataset.id} public rules"):
                        treated = public_table(dataset, state.table)
                    with result.timed(f"{dataset.id} k-anonymity"):
                        gated = anonymised(dataset, treated)
                    del treated
                except PublicationBlocked as exc:
                    result.blocked[dataset.id] = str(exc)
                    store.record_publication(
                        run_id, dataset.id, ds, "blocked", {"reason": str(exc)}
                    )
                    log.warning("%s", exc)
                else:
                    report = gated.report()
                    extra = {
                        "dataset": dataset.id,
                        "kind": "microdata",
                        "kanon": report,
                        "input_signature": signatures[dataset.id],
                    }
                    with result.timed(f"{dataset.id} files"):
                        staged.append(
                            _staged(lake, dataset.id, gated.table, ds, state.inputs, extra, report)
                        )
                    staged[-1].exempt = _exempt_columns(dataset)
                    del gated
            if dataset.id in stats_rebuilt:
                with result.timed(f"{dataset.id} statistics"):
                    stats = statistics_tables(catalog, {dataset.id: state.table}, ds)
                for stat in stats:
                    describe = stat.describe() | {"input_signature": stat_signatures[dataset.id]}
                    with result.timed(f"{dataset.id} statistics files"):
                        staged.append(
                            _staged(
                                lake, f"stats/{stat.name}", stat.table, ds, state.inputs, describe
                            )
                        )
            del state
        with result.timed("leak scan"):
            findings = _leak_findings(lake, staged)
        if findings:
            raise LeakFound(
                f"public output for {ds} not published: leak scan found "
                + "; ".join(findings[:5])
                + (f" (and {len(findings) - 5} more)" if len(findings) > 5 else "")
            )
    except BaseException:
        lake.discard([s.staged for s in staged])
        raise
    lake.commit([s.staged for s in staged])
    for s in staged:
        manifest = s.staged.manifest
        store.record_partition(
            run_id,
            PartitionRecord(PUBLIC, s.name, ds, manifest.path, manifest.rows, manifest.fingerprint),
        )
        store.record_lineage(run_id, manifest.path, s.inputs)
        if not s.name.startswith("stats/"):
            store.record_publication(run_id, s.name, ds, "published", s.report)
        result.published[s.name] = s.report or {"rows": manifest.rows}
    for dataset in openable:
        if dataset.id not in rebuilt:
            _kept(store, previous, dataset.id, ds, run_id, result)
    for source in set(stat_signatures) - stats_rebuilt:
        for name in previous.statistics_of(source):
            result.unchanged[name] = previous.dates[name].isoformat()
    with result.timed("catalogue and portal"):
        entries = published_entries(catalog, lake, store, ds)
        root = f"{lake.root}/{PUBLIC}"
        for name, content in vendored_assets().items():
            replace_file(lake, f"{root}/{name}", content)
        replace_file(lake, f"{root}/catalog.jsonld", dcat_catalogue(entries, ds))
        replace_file(lake, f"{root}/index.html", portal_page(entries, ds).encode())
    if result.blocked:
        raise PublicationBlocked(
            f"public zone for {ds} written, but not: " + "; ".join(result.blocked.values())
        )
    return result


def _needed_columns(dataset: DatasetDef) -> list[str]:
    """What publishing reads of a dataset: the key and watermark (newest row per key), the
    published fields and the statistics' columns; not the IDs, names or phones it drops."""
    from etl.statistics import STAT_COLUMNS

    wanted = [*dataset.key, dataset.source.watermark_column or ""]
    wanted += [f.name for f, _ in public_fields(dataset)] + STAT_COLUMNS.get(dataset.id, [])
    return [f.name for f in dataset.fields if f.name in wanted]


def _kept(
    store: CatalogStore,
    previous: _Previous,
    name: str,
    ds: date,
    run_id: str,
    result: PublicationResult,
) -> None:
    """A microdata table whose inputs did not change keeps its latest publication: the
    night records it as published, with that publication's report and date."""
    since = previous.dates[name]
    report = {**previous.manifests[name].extra.get("kanon", {}), "unchanged_since": str(since)}
    if since != ds:
        store.record_publication(run_id, name, ds, "published", report)
    result.unchanged[name] = since.isoformat()


def _exempt_columns(dataset: DatasetDef) -> list[str]:
    """Published business registration numbers are 15 digits, like old resident IDs."""
    return [f.name for f, _ in public_fields(dataset) if f.rule == "business_reg_no"]


def _staged(
    lake: Lake,
    name: str,
    table: pa.Table,
    ds: date,
    inputs: Sequence[str],
    extra: dict,
    report: dict | None = None,
) -> StagedTable:
    path = lake.public_partition(name, ds)
    extra = {**extra, "temporal": temporal_coverage(table)}
    staged = stage_delivery(lake, path, delivery_files(name, table), extra=extra)
    return StagedTable(name, staged, list(inputs), report or {})


def _leak_findings(lake: Lake, staged: list[StagedTable]) -> list[str]:
    """Scan every staged file as written (Parquet read back, CSV parsed back as text)."""
    return [
        line
        for s in staged
        for line in public_file_findings(
            lake, s.staged.tmp, s.staged.manifest.extra["distributions"], s.name, s.exempt
        )
    ]


def public_file_findings(
    lake: Lake, folder: str, distributions: list[dict], name: str, exempt: Sequence[str] = ()
) -> list[str]:
    """Leak-scan findings (without values) over the files of one public partition.

    The scan judges every value on its own, and a partition's Parquet and CSV files hold
    the same values (the CSV as text): so each column's distinct values, of every file as
    read back, are scanned once together, and only a column where one was flagged is
    scanned file by file, row by row, for the findings' row counts."""
    locations = [(d["file"], f"{folder}/{d['file']}") for d in distributions]

    def texts_of(location: str) -> dict[str, pa.ChunkedArray]:
        if location.endswith(".csv") and not _csv_candidates(lake, location):
            return {}  # no cell of it can hold a finding (see _csv_candidates)
        return _scanned_texts(_read_back(lake, location, encoded=True))

    texts: dict[str, list[pa.Array]] = {}
    with ThreadPoolExecutor(2) as pool:  # the files read back side by side (see above)
        for found in pool.map(texts_of, [location for _, location in locations]):
            for column, values in found.items():
                texts.setdefault(column, []).extend(values.chunks)
    flagged = [  # each column's distinct values of both files, found in one pass
        column
        for column, chunks in texts.items()
        if scan_table(pa.table({column: pc.unique(_one_type(chunks))}), exempt_columns=exempt)
    ]
    lines: list[str] = []
    for file, location in locations if flagged else []:
        table = _read_back(lake, location)
        found = scan_table(
            table.select([c for c in table.column_names if c in flagged]), exempt_columns=exempt
        )
        lines += [f.describe(f"{PUBLIC}/{name}/{file}") for f in found]
    return lines


def _csv_candidates(lake: Lake, location: str) -> bool:
    """Whether a staged CSV file may hold an ID or a mobile in a cell, judged from its bytes
    alone, without parsing it (the population's CSV parsed back was most of its scan).

    The scan flags only a cell with eleven digits and nothing but separators between them
    (``leak_scan.CANDIDATE_RE2``). A cell's text is a stretch of the file's bytes: quoted or
    not, its digits and separators stand in the file as in the cell, side by side (the
    quoting only doubles quotes, which such a run does not hold). So a file in which the
    pattern matches nowhere has no such cell. In a file without a quote every line break
    ends a record, so no cell holds one: the run is looked for within lines, and a row
    ending in digits followed by one beginning with them is not taken for a cell. Bytes
    that are not UTF-8 fail here as the parse would fail on them."""
    # a local file mapped, not copied (the population's CSV is 113 MB at full scale)
    opened = pa.memory_map(location) if lake.is_local else lake.fs.open_input_stream(location)
    with opened as stream:
        data = stream.read_buffer()
        ends = pa.array([0, data.size], pa.int64()).buffers()[1]
        text = pa.Array.from_buffers(pa.large_string(), 1, [None, ends, data])
        text.validate(full=True)  # UTF-8, as the parse reads it
        quoted = pc.match_substring_regex(text, '"')[0].as_py()  # RE2 finds a literal fast
        pattern = CANDIDATE_RE2 if quoted else CANDIDATE_IN_LINE_RE2
        return bool(pc.match_substring_regex(text, pattern)[0].as_py())


def _read_back(lake: Lake, location: str, encoded: bool = False) -> pa.Table:
    """A staged public file as a reader gets it: Parquet as typed, the CSV as text.

    ``encoded``: the text columns of few values (sex, district, status … in the sample
    of the first rows) dictionary-encoded as they are read, for their distinct values: a
    column of few values over millions of rows is then never laid out row by row."""
    if location.endswith(".parquet"):
        read_dictionary = None
        if encoded:
            first = next(
                pq.ParquetFile(location, filesystem=lake.fs).iter_batches(batch_size=10_000), None
            )
            read_dictionary = _few_valued(first)
        return pq.read_table(location, filesystem=lake.fs, read_dictionary=read_dictionary)
    with lake.fs.open_input_stream(location) as stream:
        data = stream.read()
    # every column read as the text it holds (no type guessed, then cast back: a third of
    # the time, and a cell like "007" is scanned as written, not as 7)
    header = data[: data.find(b"\n") + 1 or len(data)].decode("utf-8-sig")
    types = {name: pa.string() for name in next(csv.reader(io.StringIO(header)), [])}
    options = pacsv.ConvertOptions(strings_can_be_null=True, column_types=types)
    if encoded:
        first = pacsv.open_csv(pa.BufferReader(data), convert_options=options).read_next_batch()
        for name in _few_valued(first):
            types[name] = pa.dictionary(pa.int32(), pa.string())
        options = pacsv.ConvertOptions(strings_can_be_null=True, column_types=types)
    return pacsv.read_csv(pa.BufferReader(data), convert_options=options)


def _few_valued(sample: pa.RecordBatch | None) -> list[str]:
    """The text columns of ``sample`` whose values repeat (a quarter as many distinct)."""
    if sample is None:
        return []
    return [
        name
        for name, values in zip(sample.schema.names, sample.columns, strict=True)
        if pa.types.is_string(values.type) and pc.count_distinct(values).as_py() * 4 < len(values)
    ]


def _one_type(chunks: list[pa.Array]) -> pa.ChunkedArray:
    """Text chunks as one array: as they are, or all as large strings where types differ."""
    if len({c.type for c in chunks}) > 1:
        chunks = [c.cast(pa.large_string()) for c in chunks]
    return pa.chunked_array(chunks)


def _scanned_texts(table: pa.Table) -> dict[str, pa.ChunkedArray]:
    """The columns ``scan_table`` reads, as it reads them: text, and integers as text (an
    ID stored as a number is still an ID); it passes over dates, floats and booleans. A
    dictionary-encoded column gives its dictionaries' values (all its rows hold)."""
    texts = {}
    for column, values in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_dictionary(values.type):  # its values: the distinct ones, per chunk
            values = pa.chunked_array([c.dictionary for c in values.chunks], values.type.value_type)
        if pa.types.is_integer(values.type):  # the text of its distinct values: the same
            texts[column] = pa.chunked_array([pc.unique(values).cast(pa.string())])
        elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            texts[column] = values
    return texts


def verify_public(
    catalog: Catalog, lake: Lake, store: CatalogStore, ds: date | None = None
) -> tuple[list[str], int]:
    """The leak scan again over the committed public partitions of ``ds`` (default: the
    latest night published), for ``lake verify``: findings without values, partitions."""
    records = store.partitions(zone=PUBLIC)
    if ds is None and records:
        ds = max(p.ds for p in records)
    findings, scanned = [], 0
    for record in (p for p in records if p.ds == ds):
        manifest = lake.read_manifest(record.path)
        if manifest is None:
            continue
        exempt: list[str] = []
        if not record.dataset_id.startswith("stats/"):
            exempt = _exempt_columns(catalog.dataset(record.dataset_id))
        findings += public_file_findings(
            lake, record.path, manifest.extra["distributions"], record.dataset_id, exempt
        )
        scanned += 1
    return findings, scanned
