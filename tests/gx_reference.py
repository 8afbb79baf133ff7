"""The reference for the fast checks: the same suite run by Great Expectations' own engine.

Production computes every check once over Arrow columns (``etl/quality.py``); this is the
slow obvious formulation it replaced (a GX validation over a pandas copy of the batch,
``result_format=COMPLETE`` for the failing row indices), kept only in the tests, which
require both to find the same rows for every check.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from catalog.definitions import DatasetDef
from catalog.errors import LakeError
from etl.quality import CheckOutcome, build_suite

RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}


class GxReference:
    """Runs one dataset's suite on pandas frames with GX's own validation engine."""

    def __init__(self, dataset: DatasetDef, as_of: date) -> None:
        import great_expectations as gx
        import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        pandas_engine.HASH_THRESHOLD = 0  # GX md5-hashes every batch only to label results
        self.dataset = dataset
        self.context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
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

    def check(self, frame: pd.DataFrame | pa.Table) -> list[CheckOutcome]:
        """Run the suite on a batch; one outcome per expectation, in the suite's order."""
        if isinstance(frame, pa.Table):
            frame = frame.to_pandas(
                types_mapper=lambda t: pd.StringDtype() if pa.types.is_string(t) else None
            )
        result = self.validation.run(
            batch_parameters={"dataframe": frame.reset_index(drop=True)},
            result_format=RESULT_FORMAT,
        )
        outcomes = []
        for r in result.results:
            meta = r.expectation_config.meta
            info = r.exception_info
            candidates = [info, *(v for v in info.values() if isinstance(v, dict))]
            if any(c.get("raised_exception") for c in candidates):
                raise LakeError(f"{self.dataset.id}: check {meta['check']} could not run")
            rows = np.asarray(r.result.get("unexpected_index_list") or [], dtype=np.int64)
            outcomes.append(CheckOutcome(meta["check"], meta["reason"], rows, meta["columns"]))
        return outcomes
