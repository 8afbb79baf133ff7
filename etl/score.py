"""``lake score``: the crosswalks against a ground truth, as pairwise precision/recall/F1.

The ground truth is a folder of ``<dataset>.parquet`` files with ``source_key`` and
``entity_id`` (what the simulator writes; the pipeline itself never reads it). Two rows
form a *predicted pair* when the crosswalk gives them one unified id, a *true pair* when
the truth gives them one entity. Per match rule the pairs counted are the ordered pairs
(i, j) whose first row i was linked by that rule, so the rule rows sum to the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from catalog.errors import LakeError
from etl.standardise import clean_text

SUBJECT = "subject"


@dataclass(frozen=True)
class PairScore:
    rule: str
    rows: int
    predicted: int
    true: int
    both: int

    @property
    def precision(self) -> float:
        return self.both / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.both / self.true if self.true else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def read_truth(folder: Path) -> pd.DataFrame:
    """``dataset, source_key, entity_id`` from the truth folder (keys in their clean form)."""
    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        raise LakeError(f"ground truth {folder}: no <dataset>.parquet files")
    parts = []
    for f in files:
        t = pd.read_parquet(f, columns=["source_key", "entity_id"])
        parts.append(t.assign(dataset=f.stem))
    truth = pd.concat(parts, ignore_index=True)
    truth["source_key"] = clean_key(truth["source_key"])
    return truth.drop_duplicates(["dataset", "source_key"], keep="last")


def clean_key(keys: pd.Series) -> pd.Series:
    """A key as the clean zone holds it: NFKC, no zero-width or spaces or hyphens, upper case."""
    arr = clean_text(pa.array(keys.astype(object).to_numpy(), pa.string()))
    text = pd.Series(arr.to_pylist(), dtype="str", index=keys.index)
    return text.str.replace(r"[\s\-]", "", regex=True).str.upper()


def pairwise_scores(xref: pd.DataFrame, id_col: str, truth: pd.DataFrame) -> list[PairScore]:
    """Pairwise scores of one crosswalk (subject rows) overall and per match rule."""
    x = xref[xref["role"] == SUBJECT]
    x = x.assign(source_key=clean_key(x["source_key"]))
    joined = x.merge(truth, on=["dataset", "source_key"], how="inner")
    pred = joined.groupby(id_col)[id_col].transform("size").to_numpy()
    true = joined.groupby("entity_id")["entity_id"].transform("size").to_numpy()
    both = joined.groupby([id_col, "entity_id"])[id_col].transform("size").to_numpy()
    out = [_score("all", np.ones(len(joined), bool), pred, true, both)]
    for rule in sorted(joined["match_rule"].unique()):
        mine = (joined["match_rule"] == rule).to_numpy()
        out.append(_score(rule, mine, pred, true, both))
    return out


def _score(rule: str, rows: np.ndarray, pred, true, both) -> PairScore:
    return PairScore(
        rule,
        int(rows.sum()),
        int((pred[rows] - 1).sum()),
        int((true[rows] - 1).sum()),
        int((both[rows] - 1).sum()),
    )
