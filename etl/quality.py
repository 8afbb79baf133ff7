"""The checks each dataset is validated with, computed once, and their GX record.

Every validation rule lives once, as a vectorised function in :mod:`etl.rules`. This
module turns a dataset's catalog fields (required, allowed values, type, length, rule) and
cross-field checks into one ordered list of :class:`Check`\\ s — the single statement of
what is checked — and:

- runs them on a standardised Arrow batch, each check one vectorised pass over its Arrow
  columns (:func:`run_checks`): the failing row positions the quarantine needs, with no
  pandas copy of the batch and no per-row Python;
- states them as a Great Expectations suite (:func:`build_suite`: one custom expectation per
  rule, registered once per process), a real GX suite that GX itself can run;
- records each night's outcome in GX (:func:`write_data_docs`): validation results built
  from the counts the checks produced, rendered as Data Docs once per night, not per
  dataset and without a second pass over the rows (docs/decisions/0013).

``tests/gx_reference.py`` runs the same suite with GX's own engine on the same rows; the
tests require both to find exactly the same failing rows for every check.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.definitions import DatasetDef
from catalog.errors import LakeError, one_line
from catalog.files import owner_only_tree
from etl.rules import CROSS_FIELD_RULES, FIELD_RULES, TEXT_RULES, Rule, text_rules

if TYPE_CHECKING:
    from catalog.figures import QualityFigures

log = logging.getLogger(__name__)

# what fits the clean zone's decimal128(18, 2) and int64 (anything else is quarantined)
TYPE_PATTERNS = {
    "decimal": r"^-?[0-9]{1,16}(?:\.[0-9]{1,2})?$",
    "integer": r"^-?[0-9]{1,18}$",
}
CheckKind = Literal["required", "allowed", "max_length", "text", "type", "rule", "check"]


@dataclass
class CheckOutcome:
    """One check on one batch: which rows failed and how to say why."""

    name: str
    reason: str
    failed_rows: np.ndarray
    columns: list[str] = field(default_factory=list)

    def describe(self, table: pa.Table, rows: np.ndarray) -> list[str]:
        """``"<field> <reason> (<value>)"`` for each failing row."""
        present = [c for c in self.columns if c in table.column_names]
        if not present:
            return [self.reason] * len(rows)
        taken = table.select(present).take(pa.array(rows)).to_pydict()
        if len(present) == 1:
            return [f"{present[0]} {self.reason} ({_shown(v)})" for v in taken[present[0]]]
        values = zip(*(taken[c] for c in present), strict=True)
        return [
            f"{self.reason} ("
            + ", ".join(f"{c}={_shown(v)}" for c, v in zip(present, vs, strict=True))
            + ")"
            for vs in values
        ]


def _shown(value: object, limit: int = 40) -> str:
    """A value as quoted in a reason: long ones cut, so a 10 MB field stays a short line."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}…[{len(text):,} chars]"


@dataclass(frozen=True)
class Check:
    """One check of a dataset: its name, what failing it means, and how it is computed.

    ``passes`` takes the check's columns as Arrow arrays and returns True where a row
    passes. Column checks other than ``required`` see nulls as passing (whether a value
    may be missing is the ``required`` check alone), as GX's column-map expectations do.
    """

    name: str  # "<field>:<what>" or "check:<rule>"
    reason: str  # "<field> <reason> (<value>)" reads as a sentence
    columns: tuple[str, ...]
    kind: CheckKind
    passes: Callable[..., np.ndarray]
    param: object = None  # allowed values, max length, regex or the Rule
    as_of: date | None = None  # dated rules: the partition date they are judged against

    def failed_rows(self, table: pa.Table) -> np.ndarray:
        """Positions of the rows of ``table`` that fail this check (one vectorised pass)."""
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise LakeError(f"check {self.name} could not run: column {missing[0]} is missing")
        columns = [_single_chunk(table.column(c)) for c in self.columns]
        try:
            ok = np.asarray(self.passes(*columns), dtype=bool)
        except Exception as exc:  # a rule that cannot run must never pass as "no failures"
            raise LakeError(f"check {self.name} could not run: {one_line(exc)}") from exc
        if self.kind not in ("required", "check"):
            ok = ok | columns[0].is_null().to_numpy(zero_copy_only=False)
        return np.flatnonzero(~ok)

    def outcome(self, table: pa.Table) -> CheckOutcome:
        return CheckOutcome(self.name, self.reason, self.failed_rows(table), list(self.columns))


def _single_chunk(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def _not_null(values: pa.Array) -> np.ndarray:
    return values.is_valid().to_numpy(zero_copy_only=False)


def _in_set(allowed: list[str]) -> Callable[[pa.Array], np.ndarray]:
    value_set = pa.array(allowed, pa.string())

    def passes(values: pa.Array) -> np.ndarray:
        return _bools(pc.is_in(values, value_set=value_set))

    return passes


def _at_most(limit: int) -> Callable[[pa.Array], np.ndarray]:
    def passes(values: pa.Array) -> np.ndarray:
        return _bools(pc.less_equal(pc.utf8_length(values), limit))

    return passes


def _matching(pattern: str) -> Callable[[pa.Array], np.ndarray]:
    def passes(values: pa.Array) -> np.ndarray:
        return _bools(pc.match_substring_regex(values, pattern))

    return passes


def _rule(rule: Rule, as_of: date | None) -> Callable[..., np.ndarray]:
    def passes(*columns: pa.Array) -> np.ndarray:
        return rule.passes(*columns, as_of=as_of)

    return passes


def _bools(mask: pa.Array) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def dataset_checks(dataset: DatasetDef, as_of: date) -> list[Check]:
    """Every check of the dataset, in the order reasons are written (fields, then checks).

    ``as_of`` (the partition date) is the "now" of every dated rule (docs/decisions/0003).
    """
    checks: list[Check] = []
    for f in dataset.fields:
        column = (f.name,)
        if f.required:
            checks.append(Check(f"{f.name}:required", "is missing", column, "required", _not_null))
        if f.allowed:
            checks.append(
                Check(
                    f"{f.name}:allowed",
                    f"is not one of {'/'.join(f.allowed)}",
                    column,
                    "allowed",
                    _in_set(f.allowed),
                    list(f.allowed),
                )
            )
        if f.type == "string":
            checks.append(
                Check(
                    f"{f.name}:max_length",
                    f"is longer than {f.max_length} characters",
                    column,
                    "max_length",
                    _at_most(f.max_length),
                    f.max_length,
                )
            )
            for text_rule in text_rules(dataset.source.encoding):  # decoding damage
                checks.append(
                    Check(
                        f"{f.name}:{text_rule.name}",
                        text_rule.reason,
                        column,
                        "text",
                        _rule(text_rule, None),
                        text_rule,
                    )
                )
        if f.type in TYPE_PATTERNS:
            checks.append(
                Check(
                    f"{f.name}:type",
                    f"is not a {f.type} number that fits",
                    column,
                    "type",
                    _matching(TYPE_PATTERNS[f.type]),
                    TYPE_PATTERNS[f.type],
                )
            )
        if f.rule:
            rule = FIELD_RULES[f.rule]
            dated = as_of if rule.dated else None
            checks.append(
                Check(
                    f"{f.name}:{f.rule}",
                    rule.reason,
                    column,
                    "rule",
                    _rule(rule, as_of),
                    rule,
                    dated,
                )
            )
    for check in dataset.checks:
        rule = CROSS_FIELD_RULES[check.rule]
        checks.append(
            Check(
                f"check:{check.rule}",
                check.description or rule.reason,
                tuple(check.columns),
                "check",
                _rule(rule, as_of),
                rule,
                as_of if rule.dated else None,
            )
        )
    return checks


def run_checks(checks: Iterable[Check], table: pa.Table) -> list[CheckOutcome]:
    """Each check once over the standardised batch: one outcome per check, in order."""
    return [check.outcome(table) for check in checks]


# --- the same checks as a Great Expectations suite ---------------------------------------


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\W]+", name) if part)


@cache
def _rule_expectations() -> dict[str, type]:
    """Register one GX expectation class per rule (once per process); name → class.

    Each one's metric calls the rule function, so GX can run the suite on its own (the
    tests do, as the reference the fast path must agree with).
    """
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.metrics.map_metric_provider import (
        ColumnMapMetricProvider,
        MulticolumnMapMetricProvider,
        column_condition_partial,
        multicolumn_condition_partial,
    )

    classes: dict[str, type] = {}
    for rule in [*FIELD_RULES.values(), *TEXT_RULES.values()]:
        metric = f"column_values.lake_{rule.name}"

        def _pandas(cls, column: pd.Series, _rule: Rule = rule, **kwargs) -> pd.Series:
            return pd.Series(_rule.passes(column, as_of=_as_of(kwargs)), index=column.index)

        type(
            f"ColumnValuesLake{_camel(rule.name)}",
            (ColumnMapMetricProvider,),
            {
                "condition_metric_name": metric,
                "condition_value_keys": ("as_of",),
                "_pandas": column_condition_partial(engine=PandasExecutionEngine)(_pandas),
            },
        )
        classes[rule.name] = type(
            f"ExpectColumnValuesToBeLake{_camel(rule.name)}",
            (ColumnMapExpectation,),
            {
                "map_metric": metric,
                "__module__": __name__,
                "__annotations__": {"as_of": str | None},
                "as_of": None,
                "success_keys": ("as_of", "mostly"),
            },
        )
    for rule in CROSS_FIELD_RULES.values():
        metric = f"multicolumn_values.lake_{rule.name}"

        def _pandas_multi(cls, column_list: pd.DataFrame, _rule: Rule = rule, **kwargs):
            columns = [column_list[c] for c in column_list.columns]
            return pd.Series(_rule.passes(*columns, as_of=_as_of(kwargs)), index=column_list.index)

        type(
            f"MulticolumnValuesLake{_camel(rule.name)}",
            (MulticolumnMapMetricProvider,),
            {
                "condition_metric_name": metric,
                "condition_value_keys": ("as_of",),
                "_pandas": multicolumn_condition_partial(engine=PandasExecutionEngine)(
                    _pandas_multi
                ),
            },
        )
        classes[rule.name] = type(
            f"ExpectMulticolumnValuesToPassLake{_camel(rule.name)}",
            (MulticolumnMapExpectation,),
            {
                "map_metric": metric,
                "__module__": __name__,
                "__annotations__": {"ignore_row_if": Literal["never"], "as_of": str | None},
                "ignore_row_if": "never",  # the rule functions handle missing values
                "as_of": None,
                "success_keys": ("ignore_row_if", "as_of", "mostly"),
            },
        )
    return classes


def _as_of(metric_kwargs: dict) -> date | None:
    """The reference date a dated rule's expectation carries (ISO text in GX's config)."""
    value = metric_kwargs.get("as_of")
    return date.fromisoformat(value) if value else None


def expectation(check: Check):
    """The GX expectation that states ``check``; its meta names the check and reason."""
    import great_expectations.expectations as gxe

    column = check.columns[0]
    if check.kind == "required":
        made = gxe.ExpectColumnValuesToNotBeNull(column=column)
    elif check.kind == "allowed":
        made = gxe.ExpectColumnValuesToBeInSet(column=column, value_set=check.param)
    elif check.kind == "max_length":
        made = gxe.ExpectColumnValueLengthsToBeBetween(column=column, max_value=check.param)
    elif check.kind == "type":
        made = gxe.ExpectColumnValuesToMatchRegex(column=column, regex=check.param)
    else:
        rule: Rule = check.param
        dated = {"as_of": check.as_of.isoformat()} if check.as_of else {}
        expectation_class = _rule_expectations()[rule.name]
        if check.kind == "check":
            made = expectation_class(column_list=list(check.columns), **dated)
        else:
            made = expectation_class(column=column, **dated)
    made.meta = {"check": check.name, "reason": check.reason, "columns": list(check.columns)}
    return made


def build_suite(dataset: DatasetDef, as_of: date):
    """The dataset's ExpectationSuite: exactly the checks :func:`dataset_checks` computes.

    ``as_of`` (the partition date) is written into every dated rule's expectation, so the
    Data Docs show which "now" a row was judged against.
    """
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=dataset.id)
    for check in dataset_checks(dataset, as_of):
        suite.add_expectation(expectation(check))
    return suite


# --- the night's outcome, recorded in GX ------------------------------------------------


@dataclass(frozen=True)
class Validated:
    """What one dataset's validation found, as GX's Data Docs need it (counts only)."""

    dataset: DatasetDef
    figures: QualityFigures
    docs_dir: Path

    @property
    def checked(self) -> int:
        """Rows the checks ran on tonight (snapshot drops: only the changed ones)."""
        return int(self.figures.details.get("checked", self.figures.delivered))

    def result(self, suite):
        """GX's validation result for this night, built from the recorded counts."""
        from great_expectations.core.expectation_validation_result import (
            ExpectationSuiteValidationResult,
            ExpectationValidationResult,
        )

        failures = self.figures.details.get("failures", {})
        nulls = self.figures.details.get("nulls", {})
        results = []
        for e in suite.expectations:
            check = e.meta["check"]
            failed = int(failures.get(check, 0))
            counts = {"element_count": self.checked, "unexpected_count": failed}
            if check.endswith(":required") or check.startswith("check:"):
                counts["unexpected_percent"] = _percent(failed, self.checked)
            else:  # a column-map check: nulls are not judged, as GX reports them
                missing = int(nulls.get(e.meta["columns"][0], 0))
                present = self.checked - missing
                counts |= {
                    "missing_count": missing,
                    "missing_percent": _percent(missing, self.checked),
                    "unexpected_percent": _percent(failed, present),
                    "unexpected_percent_total": _percent(failed, self.checked),
                    "unexpected_percent_nonmissing": _percent(failed, present),
                }
            results.append(
                ExpectationValidationResult(
                    success=failed == 0, expectation_config=e.configuration, result=counts
                )
            )
        passed = sum(r.success for r in results)
        when = datetime.combine(self.figures.ds, time(), tzinfo=UTC)
        return ExpectationSuiteValidationResult(
            success=passed == len(results),
            results=results,
            suite_name=suite.name,
            statistics={
                "evaluated_expectations": len(results),
                "successful_expectations": passed,
                "unsuccessful_expectations": len(results) - passed,
                "success_percent": _percent(passed, len(results)),
            },
            meta={
                "run_id": {"run_name": self.figures.run_id, "run_time": when.isoformat()},
                "active_batch_definition": {
                    "datasource_name": "lake",
                    "data_connector_name": "raw_sources",
                    "data_asset_name": self.dataset.id,
                    "batch_identifiers": {"ds": self.figures.ds.isoformat()},
                },
                "delivered": self.figures.delivered,
                "checked": self.checked,
            },
        ), when


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def write_data_docs(validated: Iterable[Validated]) -> list[str]:
    """Render each dataset's Data Docs from its recorded outcome; the index.html paths.

    One GX import and one context per call (close of night), not per dataset task: the
    outcome is already counted, GX only records and renders it. Each dataset keeps its
    own site (``docs_dir``), owner-only like everything else under ``var/quality``.
    """
    validated = list(validated)
    if not validated:
        return []
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    written = []
    for v in validated:
        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                data_docs_sites={
                    "local": {
                        "class_name": "SiteBuilder",
                        "show_how_to_buttons": False,
                        "store_backend": {
                            "class_name": "TupleFilesystemStoreBackend",
                            "base_directory": str(v.docs_dir.resolve()),
                        },
                        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    }
                },
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            ),
        )
        suite = context.suites.add(build_suite(v.dataset, v.figures.ds))
        result, when = v.result(suite)
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
            run_id=RunIdentifier(run_name=v.figures.run_id or "night", run_time=when),
            batch_identifier=v.figures.ds.isoformat(),
        )
        context.validation_results_store.set(key, result)
        context.build_data_docs()
        owner_only_tree(v.docs_dir)
        written.append(str(v.docs_dir / "index.html"))
    return written
