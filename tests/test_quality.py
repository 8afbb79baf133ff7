"""The checks follow the catalog, and find exactly the rows GX's own engine finds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from catalog.definitions import load_catalog
from catalog.errors import LakeError
from etl.quality import dataset_checks, run_checks
from etl.readers import open_source
from etl.standardise import standardise
from tests.gx_reference import GxReference
from tests.helpers import DEMO_DATE, connections

CATALOG = load_catalog()


def test_suite_follows_the_catalog() -> None:
    dataset = CATALOG.dataset("xingzheng.service_case")
    suite = GxReference(dataset, DEMO_DATE).suite  # build_suite, in a GX context
    kinds = {e.meta["check"]: e.expectation_type for e in suite.expectations}
    assert kinds["case_no:required"] == "expect_column_values_to_not_be_null"
    assert kinds["channel:allowed"] == "expect_column_values_to_be_in_set"
    assert kinds["applicant_id_no:applicant_id"] == "expect_column_values_to_be_lake_applicant_id"
    assert kinds["check:not_before"] == "expect_multicolumn_values_to_pass_lake_not_before"
    required = {f.name for f in dataset.fields if f.required}
    assert {c.split(":")[0] for c in kinds if c.endswith(":required")} == required
    # the suite states exactly the checks validation computes, in the same order
    assert list(kinds) == [c.name for c in dataset_checks(dataset, DEMO_DATE)]


def _delivered(departments, dataset_id: str) -> pa.Table:
    """The dataset's catalog columns as delivered (every column text), dirt and all."""
    dataset = CATALOG.dataset(dataset_id)
    conn = connections(departments.out_dir)[dataset.source.connection_id]
    raw = pa.Table.from_batches(list(open_source(dataset, conn, DEMO_DATE).batches()))
    return raw.select(dataset.field_names)


@pytest.mark.parametrize("dataset_id", [d.id for d in CATALOG.datasets])
def test_checks_find_exactly_the_rows_gx_finds(departments, dataset_id: str) -> None:
    """The fast path against the reference: the same suite run by GX's engine on pandas."""
    dataset = CATALOG.dataset(dataset_id)
    raw = _delivered(departments, dataset_id)
    standardised, _ = standardise(raw, dataset)
    # the rows as delivered too: raw formats, 15-digit IDs, full-width text fail far more
    for table in (standardised, raw):
        fast = run_checks(dataset_checks(dataset, DEMO_DATE), table)
        reference = GxReference(dataset, DEMO_DATE).check(table)
        assert [o.name for o in fast] == [o.name for o in reference]
        for mine, theirs in zip(fast, reference, strict=True):
            assert np.array_equal(mine.failed_rows, theirs.failed_rows), mine.name
    assert sum(len(o.failed_rows) for o in fast) > 0  # the delivery is dirty: checks did fail


def test_a_check_that_cannot_run_is_an_error_not_a_pass() -> None:
    dataset = CATALOG.dataset("zhijian.org_code")
    table = pa.table({"org_code": pa.array(["123456788"])})  # the other columns are missing
    with pytest.raises(LakeError, match="could not run"):
        run_checks(dataset_checks(dataset, DEMO_DATE), table)
