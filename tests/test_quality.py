"""The GX suite is generated from the catalog and finds exactly what the rule functions find."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from catalog.definitions import load_catalog
from catalog.errors import LakeError
from etl.quality import QualitySuite
from etl.rules import FIELD_RULES
from tests.helpers import DEMO_DATE

CATALOG = load_catalog()


def test_suite_follows_the_catalog() -> None:
    dataset = CATALOG.dataset("xingzheng.service_case")
    suite = QualitySuite(dataset, DEMO_DATE).suite
    kinds = {e.meta["check"]: e.expectation_type for e in suite.expectations}
    assert kinds["case_no:required"] == "expect_column_values_to_not_be_null"
    assert kinds["channel:allowed"] == "expect_column_values_to_be_in_set"
    assert kinds["applicant_id_no:applicant_id"] == "expect_column_values_to_be_lake_applicant_id"
    assert kinds["check:not_before"] == "expect_multicolumn_values_to_pass_lake_not_before"
    required = {f.name for f in dataset.fields if f.required}
    assert {c.split(":")[0] for c in kinds if c.endswith(":required")} == required


def test_gx_finds_the_rows_the_rule_functions_find(departments) -> None:
    dataset = CATALOG.dataset("renshe.insured_person")
    path = departments.out_dir / "renshe" / "insured_person_20261128.csv"
    frame = pd.read_csv(path, encoding="gbk", dtype="string")
    outcomes = {o.name: o for o in QualitySuite(dataset, DEMO_DATE).check(frame)}
    for f in dataset.fields:
        if f.rule:
            expected = np.flatnonzero(~FIELD_RULES[f.rule].passes(frame[f.name], as_of=DEMO_DATE))
            assert np.array_equal(outcomes[f"{f.name}:{f.rule}"].failed_rows, expected), f.name
    # the raw delivery is dirty (dates in mixed formats) before standardisation
    assert len(outcomes["birth_date:date"].failed_rows) > 0


def test_a_check_that_cannot_run_is_an_error_not_a_pass() -> None:
    dataset = CATALOG.dataset("zhijian.org_code")
    frame = pd.DataFrame({"org_code": pd.array(["123456788"], dtype="string")})  # columns missing
    with pytest.raises(LakeError, match="could not run"):
        QualitySuite(dataset, DEMO_DATE).check(frame)
