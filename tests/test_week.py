"""A week in the life of the lake, the way the README tells a user to run it.

``lake demo``, then six times ``lake simulate --advance`` and ``lake run --date <next day>``
(each night through Airflow's ``dag.test()``), then ``lake backfill`` of the seven dates.
Every night succeeds with rows conserved, ``lake status`` shows seven green nights, and the
backfill publishes the same clean rows. The commands run as the user runs them: separate
processes with their own lake home (Airflow metadata DB, connections, catalog store), so
this session's Airflow settings do not leak in. Slow by nature (14 nights through Airflow):
about 8 minutes on an idle 2-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from catalog.definitions import load_catalog
from catalog.store import CatalogStore
from etl.settings import LakeSettings
from etl.zones import RAW_CLEAN, Lake
from tests.helpers import DEMO_DATE, REPO, TEST_SCALE

NIGHTS = [DEMO_DATE + timedelta(days=n) for n in range(7)]
LINEAGE = ["_batch_id", "_extracted_at"]  # which run wrote a row, and when: new on a rerun


def _lake(home: Path, *args: str) -> str:
    """Run a `lake` command in its own process and lake home; its output (fails on error)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YIMEN_", "AIRFLOW"))} | {
        "YIMEN_HOME": str(home)
    }
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    shown = f"lake {' '.join(args)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    assert done.returncode == 0, shown
    return done.stdout


def _clean_rows(lake: Lake, ds) -> dict[str, pd.DataFrame]:
    """Every dataset's clean partition of ``ds``, sorted, without the lineage columns."""
    rows = {}
    for dataset in load_catalog().datasets:
        frame = lake.read_partition(lake.dataset_partition(RAW_CLEAN, dataset, ds)).to_pandas()
        frame = frame.drop(columns=LINEAGE).astype("string")
        rows[dataset.id] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return rows


def assert_same_rows(after: pd.DataFrame, before: pd.DataFrame, what: str) -> None:
    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(list(frame.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(after), ordered(before), obj=what)


@pytest.mark.week
def test_a_week_of_nights_then_a_backfill_of_the_week(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = LakeSettings.under(home)
    _lake(home, "demo", "--scale", str(TEST_SCALE), "--date", NIGHTS[0].isoformat())
    for night in NIGHTS[1:]:
        advanced = _lake(home, "simulate", "--advance")
        assert f"as of {night}" in advanced
        _lake(home, "run", "--date", night.isoformat())

    status = _lake(home, "status")
    green = [line for line in status.splitlines() if " success " in line]
    assert sorted(line.split()[0] for line in green) == [n.isoformat() for n in NIGHTS], status
    assert "failed" not in status

    store = CatalogStore(settings.catalog_url)
    catalog = load_catalog()
    snapshots = {d.id for d in catalog.datasets if d.source.load == "snapshot"}
    for night in NIGHTS:
        figures = {q.dataset_id: q for q in store.quality(night)}
        assert set(figures) == {d.id for d in catalog.datasets}, night
        for q in figures.values():
            assert q.conserved, q.summary()
        if night != NIGHTS[0]:  # incremental nights: snapshots compared with the night before
            for dataset_id in snapshots:
                q = figures[dataset_id]
                assert q.unchanged > 0.9 * q.delivered, q.summary()
                assert q.details["changes"]["compared_with"] == (night - timedelta(1)).isoformat()
    lake = settings.lake()
    first = {night: _clean_rows(lake, night) for night in NIGHTS}

    _lake(home, "backfill", "--from", NIGHTS[0].isoformat(), "--to", NIGHTS[-1].isoformat())
    for night in NIGHTS:
        again = _clean_rows(lake, night)
        for dataset in catalog.datasets:
            before, after = first[night][dataset.id], again[dataset.id]
            if dataset.source.load == "snapshot":
                pd.testing.assert_frame_equal(after, before, obj=f"{dataset.id} {night}")
                continue
            # a SQL read has no order but the database's (a window's WHERE may walk the
            # updated_at index), so the delivered row number is not compared …
            before, after = before.drop(columns="_row_number"), after.drop(columns="_row_number")
            if night == NIGHTS[-1]:
                assert_same_rows(after, before, f"{dataset.id} {night}")
            else:
                # … and it is read again from the system as it is now: a row changed on a
                # later day has moved to that day's window, so only it may be missing here
                merged = after.merge(before, how="left", indicator=True)
                assert (merged["_merge"] == "both").all(), f"{dataset.id} {night}"
        assert all(q.conserved for q in store.quality(night))
