"""Extract a department dataset into the raw zone, as delivered (docs/architecture.md §3, §5).

One reader per source kind streams the delivery in record batches of strings (the raw zone
keeps values exactly as the department sent them; standardising is a later step). The
extraction adds ``_source``, ``_batch_id``, ``_extracted_at`` and ``_row_number`` and writes
``raw/sources/<dept>/<dataset>/dt=<ds>/`` atomically (one Iceberg commit, then the store's
commit point). SQL sources with an ``updated_at``
watermark are read incrementally; file drops are full snapshots.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pyarrow as pa

from catalog.definitions import DatasetDef
from catalog.errors import SourceError, without_row_content
from catalog.store import CatalogStore, PartitionRecord
from etl.connections import SourceConnection
from etl.readers import SourceReader, open_source
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

    def summary(self) -> str:
        window = ""
        if self.low_watermark or self.high_watermark:
            window = f", updated_at in ({self.low_watermark or '-∞'}, {self.high_watermark}]"
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
    """Read one dataset's delivery for ``ds`` and commit it as a raw partition."""
    incremental = dataset.source.load == "incremental"
    low, bound = store.extraction_window(dataset.id, ds) if incremental else (None, None)
    reader = open_source(dataset, connection, ds, window=(low, bound), batch_rows=batch_rows)
    missing = [f for f in dataset.field_names if f not in reader.columns]
    added = [c for c in reader.columns if c not in dataset.field_names]
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
    manifest = lake.write_partition(
        path,
        (stamp(batch) for batch in _checked(reader)),
        schema,
        private=True,
        run_id=batch_id,
        extra=lambda: {  # asked after the read, when the high watermark is known
            "dataset": dataset.id,
            "source": reader.location,
            "low_watermark": low,
            "high_watermark": bound or getattr(reader, "high_watermark", None) or low,
            "missing_columns": missing,
            "added_columns": added,
        },
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
    result = ExtractResult(
        dataset.id, ds, manifest.rows, path, reader.location, low, high, missing, added
    )
    log.info(result.summary())
    return result


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
        row_numbers = pa.array(range(self.next_row, self.next_row + n), pa.int64())
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
