"""Extract a department dataset into the raw zone, as delivered (docs/architecture.md §3, §5).

One reader per source kind streams the delivery in record batches of strings (the raw zone
keeps values exactly as the department sent them; standardising is a later step). The
extraction adds ``_source``, ``_batch_id``, ``_extracted_at`` and ``_row_number`` and writes
``raw/sources/<dept>/<dataset>/dt=<ds>/`` atomically (one Iceberg commit, then the store's
commit point). SQL sources with an ``updated_at``
watermark are read incrementally; file drops are full snapshots.

Before the new partition replaces the old one, the delivery contract (``etl/contract.py``)
is checked: the control file's checksum before a row is read, the header as soon as it is
known, the row count and the volume against the last good night once the rows are staged.
A failing check discards what was staged, so the last good raw partition stays.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from catalog.definitions import DatasetDef
from catalog.errors import SourceError, shown_column, without_row_content
from catalog.store import CatalogStore, PartitionRecord
from etl.connections import SourceConnection
from etl.contract import (
    ControlFile,
    LastGoodNight,
    check_header,
    check_row_count,
    verified_control_file,
    volume_breaker,
    volume_problem,
)
from etl.readers import SourceReader, delivered_file, open_source
from etl.zones import METADATA_FIELDS, RAW_SOURCES, Lake, raw_schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractResult:
    dataset_id: str
    ds: date
    rows: int
    path: str
    location: str
    low_watermark: str | None
    high_watermark: str | None
    missing_columns: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    null_watermark_rows: int = 0  # read by every night until the source fills them in

    def summary(self) -> str:
        window = ""
        if self.low_watermark or self.high_watermark:
            window = f", updated_at in ({self.low_watermark or '-∞'}, {self.high_watermark}]"
        if self.null_watermark_rows:
            window += f" + {self.null_watermark_rows:,} with no updated_at"
        return f"{self.dataset_id}: {self.rows:,} rows from {self.location}{window}"


def extract_to_raw(
    dataset: DatasetDef,
    connection: SourceConnection,
    ds: date,
    *,
    lake: Lake,
    store: CatalogStore,
    batch_id: str,
    batch_rows: int = 100_000,
) -> ExtractResult:
    """Read one dataset's delivery for ``ds`` and commit it as a raw partition.

    Raises :class:`SourceError` when the delivery breaks its contract (control file,
    header) and :class:`BreakerTripped` when its volume is not believable; either way the
    partition that was there stays.
    """
    incremental = dataset.source.load == "incremental"
    low, bound = store.extraction_window(dataset.id, ds) if incremental else (None, None)
    control = None
    if dataset.source.kind != "sql":
        control = verified_control_file(dataset, delivered_file(dataset, connection, ds))
    reader = open_source(dataset, connection, ds, window=(low, bound), batch_rows=batch_rows)
    check_header(dataset, reader.location, reader.columns)
    missing = [f for f in dataset.field_names if f not in reader.columns]
    # a header cell outside the catalog may be a data row or a notes cell: named by position
    added = [
        shown_column(c, i, dataset.field_names)
        for i, c in enumerate(reader.columns, start=1)
        if c not in dataset.field_names
    ]
    if missing or added:
        log.warning(
            "%s: delivery %s differs from the catalog: missing %s, added %s",
            dataset.id,
            reader.location,
            missing or "none",
            added or "none",
        )
    schema = raw_schema(reader.columns)
    stamp = _MetadataStamp(dataset.id, batch_id)
    path = lake.dataset_partition(RAW_SOURCES, dataset, ds)

    def checked_extra() -> dict:
        """Asked after the read, before the manifest: the window's end is known, and the
        end-of-read checks run here so a failing one discards the staged partition."""
        rows = stamp.next_row - 1
        return {
            "dataset": dataset.id,
            "source": reader.location,
            "low_watermark": low,
            "high_watermark": bound or getattr(reader, "high_watermark", None) or low,
            "missing_columns": missing,
            "added_columns": added,
            "control_file": control.as_extra() if control else None,
            "volume": _delivery_checked(dataset, ds, reader.location, rows, control, store),
            "null_watermark_rows": getattr(reader, "null_watermark_rows", 0),
        }

    batches = (stamp(batch) for batch in _checked(reader))
    manifest = lake.write_partition(
        path, batches, schema, private=True, extra=checked_extra, run_id=batch_id
    )
    # a recorded window keeps its end on reruns; file drops have no watermark
    high = bound or getattr(reader, "high_watermark", None) or low
    store.record_partition(
        batch_id,
        PartitionRecord(
            zone=RAW_SOURCES,
            dataset_id=dataset.id,
            ds=ds,
            path=path,
            rows=manifest.rows,
            fingerprint=manifest.fingerprint,
        ),
    )
    if incremental:
        store.record_watermark(dataset.id, ds, low, high, manifest.rows, batch_id)
    nulls = getattr(reader, "null_watermark_rows", 0)
    result = ExtractResult(
        dataset.id, ds, manifest.rows, path, reader.location, low, high, missing, added, nulls
    )
    log.info(result.summary())
    if nulls:
        log.warning(
            "%s: %s rows have no %s: delivered every night until the source fills it in",
            dataset.id,
            f"{nulls:,}",
            dataset.source.watermark_column,
        )
    return result


def _delivery_checked(
    dataset: DatasetDef,
    ds: date,
    location: str,
    rows: int,
    control: ControlFile | None,
    store: CatalogStore,
) -> dict:
    """The end-of-read checks: rows as announced, volume believable (or accepted).

    Returns what the manifest records about the volume check.
    """
    if control is not None:
        check_row_count(dataset, location, control, rows)
    last = store.last_good_delivery(dataset.id, ds)
    last_good = LastGoodNight(*last) if last else None
    checked = {"last_good": {"ds": str(last[0]), "rows": last[1]} if last else None}
    problem = volume_problem(dataset, rows, last_good)
    if problem is None:
        return checked
    accepted = store.acceptance(dataset.id, ds)
    if accepted is None:
        raise volume_breaker(dataset, ds, location, problem)
    log.warning(
        "%s %s: volume check: %s; accepted by %s at %s: %s",
        dataset.id,
        ds,
        problem,
        accepted.accepted_by,
        accepted.accepted_at,
        accepted.reason,
    )
    return checked | {
        "problem": problem,
        "accepted_by": accepted.accepted_by,
        "accepted_at": str(accepted.accepted_at),
        "reason": accepted.reason,
    }


def _checked(reader: SourceReader) -> Iterator[pa.RecordBatch]:
    """Name the source in any low-level read error, so the message is one clear line."""
    try:
        yield from reader.batches()
    except SourceError:
        raise
    except (pa.ArrowException, UnicodeDecodeError, ValueError, TypeError, OSError) as exc:
        raise SourceError(
            f"{reader.dataset_id}: cannot read {reader.location}: {without_row_content(exc)}"
        ) from exc


class _MetadataStamp:
    """Adds the raw-zone metadata columns; ``_row_number`` counts across batches from 1."""

    def __init__(self, dataset_id: str, batch_id: str) -> None:
        self.dataset_id, self.batch_id = dataset_id, batch_id
        self.extracted_at = datetime.now(UTC)
        self.next_row = 1

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        # numpy, not ``range``: pyarrow would walk a range in Python, one int at a time
        # (≈ 0.3 s of a 2 M-row extraction)
        row_numbers = pa.array(np.arange(self.next_row, self.next_row + n, dtype=np.int64))
        self.next_row += n
        columns = [
            *batch.columns,
            pa.repeat(self.dataset_id, n),
            pa.repeat(self.batch_id, n),
            pa.repeat(pa.scalar(self.extracted_at, pa.timestamp("us", tz="UTC")), n),
            row_numbers,
        ]
        names = [*batch.schema.names, *(f.name for f in METADATA_FIELDS)]
        return pa.RecordBatch.from_arrays(columns, names=names)
