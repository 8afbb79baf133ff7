"""The fast validation path publishes exactly what the slow obvious formulation publishes.

The reference, kept only here: every repair applied to every value (no skipping of values
already canonical, no per-distinct-value shortcut), every check run by Great Expectations'
own engine on a pandas copy of the batch (``tests/gx_reference.py``), and "newest version
per key" by a pandas sort and group. Both run on the same simulated delivery, dirt and
all; the clean partition, the quarantine (rows, rules, reasons) and the figures must agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import etl.standardise as standardise_module
from catalog.definitions import load_catalog
from etl.extract import extract_to_raw
from etl.standardise import ZERO_WIDTH, _canonical_dates, standardise_column
from etl.validate import (
    _conform_to_catalog,
    _quarantine_rows,
    _schema_outcomes,
    _typed,
    _updated_at,
    validate_partition,
)
from etl.zones import RAW_CLEAN, RAW_QUARANTINE, RAW_SOURCES, Lake, clean_schema
from tests.gx_reference import GxReference
from tests.helpers import DEMO_DATE, connections

CATALOG = load_catalog()


def _every_value_clean_text(values: pa.Array) -> pa.Array:
    """clean_text as first written: NFKC and zero-width removal on every value."""
    values = pc.utf8_normalize(values.cast(pa.string()), form="NFKC")
    values = pc.utf8_trim_whitespace(pc.replace_substring_regex(values, ZERO_WIDTH, ""))
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _every_value_dates(values: pa.Array, *, with_time: bool) -> pa.Array:
    return _canonical_dates(values, with_time=with_time)


@pytest.fixture(scope="module")
def lake(departments, tmp_path_factory) -> Lake:
    """The session's delivery extracted and validated by the production path."""
    root = tmp_path_factory.mktemp("fast")
    lake = Lake(str(root / "lake"), f"sqlite:///{root / 'catalog.db'}")
    conns = connections(departments.out_dir)
    for dataset in CATALOG.datasets:
        extract_to_raw(
            dataset,
            conns[dataset.source.connection_id],
            DEMO_DATE,
            lake=lake,
            store=lake.store,
            batch_id="t",
        )
        validate_partition(
            dataset, DEMO_DATE, lake=lake, store=lake.store, run_id="t", work_dir=root / "tmp"
        )
    return lake


def _reference(raw: pa.Table, dataset, monkeypatch) -> tuple[pa.Table, pa.Table | None, dict]:
    """Clean rows, quarantined rows and failure counts by the slow obvious formulation."""
    with monkeypatch.context() as m:  # every repair on every value
        m.setattr(standardise_module, "clean_text", _every_value_clean_text)
        m.setattr(standardise_module, "canonical_dates", _every_value_dates)
        m.setattr(standardise_module, "_per_distinct_value", standardise_column)
        conformed, _ = _conform_to_catalog(raw, dataset)
        std, _ = standardise_module.standardise(conformed, dataset)
    outcomes = GxReference(dataset, DEMO_DATE).check(std) + _schema_outcomes(dataset, raw)
    bad = np.zeros(raw.num_rows, dtype=bool)
    for outcome in outcomes:
        bad[outcome.failed_rows] = True
    quarantined = _quarantine_rows(raw, std, outcomes, bad) if bad.any() else None
    failures = {o.name: len(o.failed_rows) for o in outcomes}

    frame = std.to_pandas(types_mapper=pd.ArrowDtype)
    frame["_bad"] = bad
    order = _updated_at(dataset)
    by = [*dataset.key, *([order] if order else []), "_row_number"]
    ascending = [True] * len(dataset.key) + [False] * (len(by) - len(dataset.key))
    newest = frame.sort_values(by, ascending=ascending, kind="stable").groupby(
        dataset.key, sort=True, dropna=False
    )
    kept = newest.head(1)
    kept = kept[~kept["_bad"]].drop(columns="_bad")
    schema = clean_schema(dataset)
    clean = _typed(pa.Table.from_pandas(kept, preserve_index=False), schema)
    return clean, quarantined, failures


def _rows(table: pa.Table, key: list[str]) -> list[dict]:
    return table.sort_by([(k, "ascending") for k in [*key, "_row_number"]]).to_pylist()


@pytest.mark.parametrize("dataset_id", [d.id for d in CATALOG.datasets])
def test_fast_path_publishes_what_the_reference_publishes(
    lake: Lake, dataset_id: str, monkeypatch
) -> None:
    dataset = CATALOG.dataset(dataset_id)
    raw = lake.read_partition(lake.dataset_partition(RAW_SOURCES, dataset, DEMO_DATE))
    clean, quarantined, failures = _reference(raw, dataset, monkeypatch)

    published = lake.read_partition(lake.dataset_partition(RAW_CLEAN, dataset, DEMO_DATE))
    published = published.select(clean.column_names)
    assert published.num_rows == clean.num_rows
    assert _rows(published, dataset.key) == _rows(clean, dataset.key)

    held = lake.read_partition(lake.dataset_partition(RAW_QUARANTINE, dataset, DEMO_DATE))
    expected = [] if quarantined is None else quarantined.to_pylist()
    columns = ["_row_number", "_rules", "_reason"]
    assert sorted(held.select(columns).to_pylist(), key=lambda r: r["_row_number"]) == sorted(
        ({c: r[c] for c in columns} for r in expected), key=lambda r: r["_row_number"]
    )
    figures = lake.store.quality_of(dataset_id, DEMO_DATE)
    assert figures.details["failures"] == failures
    assert figures.conserved


def test_the_comparison_has_teeth(lake: Lake) -> None:
    """The delivery exercises repairs, quarantine and collapsing, so equality means something."""
    figures = [lake.store.quality_of(d.id, DEMO_DATE) for d in CATALOG.datasets]
    assert sum(q.quarantined for q in figures) > 0
    assert sum(q.collapsed for q in figures) > 0
    assert sum(sum(q.details["repaired"].values()) for q in figures) > 0


def test_rerun_with_many_buckets_publishes_the_same_rows(
    lake: Lake, monkeypatch, tmp_path: Path
) -> None:
    """Key buckets (one per million rows at scale) change nothing but the row order."""
    import etl.dedup

    dataset = CATALOG.dataset("weiji.health_record")
    path = lake.dataset_partition(RAW_CLEAN, dataset, DEMO_DATE)
    before = lake.read_partition(path)
    monkeypatch.setattr(etl.dedup, "ROWS_PER_BUCKET", 997)
    validate_partition(
        dataset, DEMO_DATE, lake=lake, store=lake.store, run_id="buckets", work_dir=tmp_path
    )
    after = lake.read_partition(path)
    assert _rows(after, dataset.key) == _rows(before, dataset.key)
