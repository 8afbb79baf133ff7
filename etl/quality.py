"""Great Expectations suites generated from the catalog, and the failing rows they find.

Every validation rule lives once, as a vectorised function in :mod:`etl.rules`; this module
registers one custom GX expectation per rule (a column-map expectation for field rules, a
multicolumn one for rules across fields), builds each dataset's suite from its catalog
fields (required, allowed values, type, rule) and checks, and runs it on standardised
batches. ``result_format=COMPLETE`` returns the index of every failing row, which is what
the quarantine needs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from catalog.definitions import DatasetDef
from catalog.errors import LakeError
from catalog.files import owner_only_tree
from etl.rules import CROSS_FIELD_RULES, FIELD_RULES, TEXT_RULES, Rule, text_rules

log = logging.getLogger(__name__)

# Only what the quarantine needs: failing index labels, no values, no query strings.
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}
# what fits the clean zone's decimal128(18, 2) and int64 (anything else is quarantined)
TYPE_PATTERNS = {
    "decimal": r"^-?[0-9]{1,16}(?:\.[0-9]{1,2})?$",
    "integer": r"^-?[0-9]{1,18}$",
}


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


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\W]+", name) if part)


@cache
def _rule_expectations() -> dict[str, type]:
    """Register one GX expectation class per rule (once per process); name → class."""
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


def build_suite(dataset: DatasetDef, as_of: date):
    """The dataset's ExpectationSuite; each expectation's meta names the check and reason.

    ``as_of`` (the partition date) is written into every dated rule's expectation, so the
    Data Docs show which "now" a row was judged against.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    rules = _rule_expectations()
    suite = gx.ExpectationSuite(name=dataset.id)

    def add(expectation, name: str, reason: str, columns: list[str]) -> None:
        expectation.meta = {"check": name, "reason": reason, "columns": columns}
        suite.add_expectation(expectation)

    for f in dataset.fields:
        if f.required:
            add(
                gxe.ExpectColumnValuesToNotBeNull(column=f.name),
                f"{f.name}:required",
                "is missing",
                [f.name],
            )
        if f.allowed:
            add(
                gxe.ExpectColumnValuesToBeInSet(column=f.name, value_set=f.allowed),
                f"{f.name}:allowed",
                f"is not one of {'/'.join(f.allowed)}",
                [f.name],
            )
        if f.type == "string":
            add(
                gxe.ExpectColumnValueLengthsToBeBetween(column=f.name, max_value=f.max_length),
                f"{f.name}:max_length",
                f"is longer than {f.max_length} characters",
                [f.name],
            )
            for text_rule in text_rules(dataset.source.encoding):  # decoding damage
                name = text_rule.name
                add(rules[name](column=f.name), f"{f.name}:{name}", text_rule.reason, [f.name])
        if f.type in TYPE_PATTERNS:
            add(
                gxe.ExpectColumnValuesToMatchRegex(column=f.name, regex=TYPE_PATTERNS[f.type]),
                f"{f.name}:type",
                f"is not a {f.type} number that fits",
                [f.name],
            )
        if f.rule:
            rule = FIELD_RULES[f.rule]
            add(
                rules[f.rule](column=f.name, **_dated(rule, as_of)),
                f"{f.name}:{f.rule}",
                rule.reason,
                [f.name],
            )
    for check in dataset.checks:
        rule = CROSS_FIELD_RULES[check.rule]
        add(
            rules[check.rule](column_list=check.columns, **_dated(rule, as_of)),
            f"check:{check.rule}",
            check.description or rule.reason,
            check.columns,
        )
    return suite


def _dated(rule: Rule, as_of: date) -> dict[str, str]:
    return {"as_of": as_of.isoformat()} if rule.dated else {}


class QualitySuite:
    """Runs one dataset's suite on batches; optionally keeps Data Docs under ``docs_dir``.

    ``as_of`` is the night's partition date: the "now" of every dated rule.
    """

    def __init__(self, dataset: DatasetDef, as_of: date, docs_dir: Path | None = None) -> None:
        import great_expectations as gx
        import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        # GX md5-hashes every batch only to label results (~2 s per million rows): skip it.
        pandas_engine.HASH_THRESHOLD = 0
        self.dataset, self.as_of, self.docs_dir = dataset, as_of, docs_dir
        sites = {}
        if docs_dir is not None:
            sites["local"] = {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        self.context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                data_docs_sites=sites,
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            ),
        )
        batch = (
            self.context.data_sources.add_pandas("delivery")
            .add_dataframe_asset(dataset.id)
            .add_batch_definition_whole_dataframe("batch")
        )
        self.suite = self.context.suites.add(build_suite(dataset, as_of))
        self.validation = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validate {dataset.id}", data=batch, suite=self.suite)
        )

    def check(self, frame: pd.DataFrame) -> list[CheckOutcome]:
        """Run the suite on a batch (RangeIndex); one outcome per expectation."""
        frame = frame.reset_index(drop=True)
        result = self.validation.run(
            batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT
        )
        outcomes = []
        for r in result.results:
            meta = r.expectation_config.meta
            error = _exception_message(r.exception_info)
            if error:  # GX swallows exceptions into a failed result: never let that pass
                raise LakeError(f"{self.dataset.id}: check {meta['check']} could not run: {error}")
            rows = np.asarray(r.result.get("unexpected_index_list") or [], dtype=np.int64)
            outcomes.append(CheckOutcome(meta["check"], meta["reason"], rows, meta["columns"]))
        return outcomes

    def build_docs(self) -> str | None:
        """Render Data Docs for this dataset's results (owner-only); the path of its index.html."""
        if self.docs_dir is None:
            return None
        self.context.build_data_docs()
        owner_only_tree(self.docs_dir)
        return str(self.docs_dir / "index.html")


def _exception_message(info: dict) -> str | None:
    """GX reports an exception flat or keyed by metric id, depending on where it happened."""
    candidates = [info, *(v for v in info.values() if isinstance(v, dict))]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            return str(candidate.get("exception_message", "unknown error")).splitlines()[0]
    return None
