"""Build every department system for one date: the world, the views, the ground truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.catalog_view import DatasetView, catalog_by_id
from simulator.departments import PLANS, Context, Plan
from simulator.dirt import apply_dirt, labels
from simulator.rates import DailyRates, DirtRates
from simulator.world import World, build_world, entity_ids, entity_kinds
from simulator.writers import (
    CsvSink,
    JsonlSink,
    ParquetSink,
    Sink,
    SqlAlchemySink,
    SqliteSink,
    XlsxSink,
    sql_connection_entry,
    write_json,
)

BATCH_ROWS = 200_000
STATE_DIR = "_state"
GT_COLUMNS = ["source_key", "entity_id", "entity_kind", "dirt"]


@dataclass
class SimulationSummary:
    """What was delivered: rows per ``dept.dataset`` and, after a day, what changed."""

    as_of: date
    rows: dict[str, int]
    out_dir: Path
    ground_truth_dir: Path
    inserts: dict[str, int] = field(default_factory=dict)
    updates: dict[str, int] = field(default_factory=dict)
    deletes: dict[str, int] = field(default_factory=dict)


def build_departments(
    out_dir: Path,
    *,
    scale: float = 0.005,
    seed: int = 20170223,
    as_of: date,
    dirt: DirtRates | None = None,
    sql_urls: dict[str, str] | None = None,
    ground_truth_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    daily: DailyRates | None = None,
) -> SimulationSummary:
    """Draw the world for ``seed``/``scale`` and write every department's system as of ``as_of``.

    SQL systems go to SQLite files under ``out_dir/<dept>/`` unless ``sql_urls`` maps the
    dataset's connection id to another database; file drops are written for ``as_of``.
    """
    out_dir = Path(out_dir).resolve()
    gt_dir = Path(ground_truth_dir or out_dir.parent / "ground_truth").resolve()
    say = progress or (lambda _msg: None)
    rates = dirt or DirtRates()
    sql_urls = dict(sql_urls or {})
    state_dir = out_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)

    say(f"drawing the world (scale {scale}, seed {seed})")
    world = build_world(seed, scale, as_of)
    world.save(state_dir)
    ctx = Context(world, as_of, rates)
    catalog = catalog_by_id()
    rows: dict[str, int] = {}
    datasets: dict[str, dict[str, object]] = {}
    for index, (ds_id, plan) in enumerate(PLANS.items()):
        view = catalog[ds_id]
        say(f"writing {ds_id}")
        n = _build_dataset(plan, view, ctx, seed, index, scale, out_dir, gt_dir, sql_urls)
        rows[ds_id] = n
        datasets[ds_id] = {"index": index, "rows": n, "next_key": n}
    write_connections(out_dir, catalog.values(), sql_urls)
    write_json(
        state_dir / "meta.json",
        {
            "seed": seed,
            "scale": scale,
            "as_of": as_of.isoformat(),
            "day": 0,
            "dirt": rates.as_dict(),
            "daily": (daily or DailyRates()).as_dict(),
            "sql_urls": sql_urls,
            "ground_truth_dir": str(gt_dir),
            "datasets": datasets,
        },
    )
    return SimulationSummary(as_of, rows, out_dir, gt_dir)


def _build_dataset(
    plan: Plan,
    view: DatasetView,
    ctx: Context,
    seed: int,
    index: int,
    scale: float,
    out_dir: Path,
    gt_dir: Path,
    sql_urls: dict[str, str],
) -> int:
    n_rows = max(1, round(plan.full_rows * scale))
    n_dup = round(n_rows * ctx.rates.duplicate)
    codes = plan.draw(ctx, n_rows - n_dup, np.random.default_rng([seed, 1, index]))
    ratio = n_dup / max(len(codes), 1)
    sink = open_sink(out_dir, view, sql_urls, ctx.as_of)
    gt = ParquetSink(gt_dir / f"{view.id}.parquet")
    state = None if view.source.kind == "sql" else ParquetSink(state_path(out_dir, view.id))
    written = 0
    try:
        for batch, start in enumerate(range(0, len(codes), BATCH_ROWS)):
            chunk = codes[start : start + BATCH_ROWS]
            dups = round((start + len(chunk)) * ratio) - round(start * ratio)
            rng = np.random.default_rng([seed, 2, index, batch])
            frame, truth = render(plan, view, ctx, chunk, rng, written, dups)
            sink.write(frame)
            gt.write(truth)
            if state is not None:
                state.write(with_truth(frame, truth))
            written += len(frame)
    finally:
        sink.close()
        gt.close()
        if state is not None:
            state.close()
    return written


def render(
    plan: Plan,
    view: DatasetView,
    ctx: Context,
    codes: np.ndarray,
    rng: np.random.Generator,
    first_key: int,
    dups: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows (catalog columns, dirt applied) and their ground truth for entity ``codes``."""
    if len(codes) == 0:  # e.g. a small system with no new rows today
        return (
            pd.DataFrame({name: pd.array([], dtype="str") for name in view.fields}),
            pd.DataFrame({name: pd.array([], dtype="str") for name in GT_COLUMNS}),
        )
    cols, tags = plan.make(ctx, codes, rng, False)
    if dups:
        pool = np.arange(len(codes))
        if plan.can_duplicate is not None:
            pool = pool[plan.can_duplicate(ctx, codes)]
        src = np.sort(rng.choice(pool, min(dups, len(pool)), replace=False))
        dcols, dtags = plan.make(ctx, codes[src], rng, True)
        dtags["duplicate"] = np.ones(len(src), dtype=bool)
        cols = {
            k: np.concatenate([np.asarray(v, dtype=object), np.asarray(dcols[k], dtype=object)])
            for k, v in cols.items()
        }
        tags = {
            k: np.concatenate(
                [tags.get(k, np.zeros(len(codes), bool)), dtags.get(k, np.zeros(len(src), bool))]
            )
            for k in tags.keys() | dtags.keys()
        }
        codes = np.concatenate([codes, codes[src]])
    n = len(codes)
    if plan.key_prefix:
        numbers = np.arange(first_key + 1, first_key + n + 1)
        cols[plan.key] = key_strings(plan.key_prefix, numbers)
    unknown = set(cols) - set(view.fields)
    if unknown:
        raise KeyError(f"{view.id}: columns not in the catalog: {sorted(unknown)}")
    frame = pd.DataFrame(
        {name: pd.array(np.asarray(cols[name], dtype=object), dtype="str") for name in view.fields}
    )
    tags |= apply_dirt(frame, plan.targets, ctx.rates, rng)
    truth = pd.DataFrame(
        {
            "source_key": frame[view.key].to_numpy(dtype=object),
            "entity_id": entity_ids(codes),
            "entity_kind": entity_kinds(codes),
            "dirt": labels(tags, n),
        }
    )
    return frame, truth


def key_strings(prefix: str, numbers: np.ndarray) -> np.ndarray:
    """Running-number keys as a legacy system shows them: ``RK0000000001``."""
    return np.strings.add(prefix, np.strings.zfill(np.asarray(numbers).astype("U12"), 10))


def with_truth(frame: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """A delivered batch plus its truth columns (``_entity_id`` ...), as kept in the state."""
    out = frame.copy()
    for col in GT_COLUMNS[1:]:
        out["_" + col] = truth[col].to_numpy()
    return out


def state_path(out_dir: Path, dataset_id: str) -> Path:
    return out_dir / STATE_DIR / f"{dataset_id}.parquet"


def sqlite_path(out_dir: Path, view: DatasetView) -> Path:
    return out_dir / view.department / f"{view.department}.db"


def drop_path(out_dir: Path, view: DatasetView, ds: date) -> Path:
    return out_dir / view.department / view.file_name(ds.strftime("%Y%m%d"))


def open_sink(out_dir: Path, view: DatasetView, sql_urls: dict[str, str], ds: date) -> Sink:
    source = view.source
    if source.kind == "sql":
        assert source.table
        if source.connection_id in sql_urls:
            return SqlAlchemySink(
                sql_urls[source.connection_id], source.table, list(view.fields), view.key
            )
        return SqliteSink(sqlite_path(out_dir, view), source.table, list(view.fields), view.key)
    path = drop_path(out_dir, view, ds)
    if source.kind == "csv":
        return CsvSink(path, source.encoding or "utf-8")
    if source.kind == "jsonl":
        return JsonlSink(path)
    if source.kind == "excel":
        return XlsxSink(path, list(view.fields), ds, sheet=source.sheet or "taxpayer")
    raise ValueError(f"{view.id}: unknown source kind {source.kind!r}")


def write_connections(out_dir: Path, views: object, sql_urls: dict[str, str]) -> None:
    """``connections.json`` for Airflow's LocalFilesystemBackend: one entry per connection id."""
    entries: dict[str, dict[str, object]] = {}
    for view in views:  # type: ignore[attr-defined]
        cid = view.source.connection_id
        if view.source.kind == "sql":
            if cid in sql_urls:
                entries[cid] = sql_connection_entry(sql_urls[cid])
            else:
                entries[cid] = {"conn_type": "sqlite", "host": str(sqlite_path(out_dir, view))}
        else:
            entries[cid] = {"conn_type": "fs", "extra": {"path": str(out_dir / view.department)}}
    write_json(out_dir / "connections.json", entries)


def load_world(out_dir: Path) -> World:
    return World.load(Path(out_dir) / STATE_DIR)
