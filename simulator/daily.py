"""One simulated day: updates, inserts and deletions in every department system.

SQL systems change in place (UPDATE/INSERT with ``updated_at`` on the new day; deletion
is a status flag), file drops get a new full snapshot where deleted rows are simply gone.
Random choices are seeded by (seed, day number, dataset), so day N is reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from simulator.build import (
    GT_COLUMNS,
    STATE_DIR,
    SimulationSummary,
    open_sink,
    render,
    sqlite_path,
    state_path,
    with_truth,
)
from simulator.catalog_view import DatasetView, catalog_by_id
from simulator.departments import PLANS, Context, Plan
from simulator.enterprises import draw_enterprises
from simulator.fmt import iso_datetimes, office_seconds
from simulator.population import draw_persons
from simulator.rates import DailyRates, DirtRates
from simulator.world import ENTERPRISE_BASE, World, adults
from simulator.writers import ParquetSink, Sink, quote, write_json


def advance_day(
    out_dir: Path, *, progress: Callable[[str], None] | None = None, rates: DailyRates | None = None
) -> SimulationSummary:
    """Move the simulated date on by one day and change every department system."""
    out_dir = Path(out_dir).resolve()
    say = progress or (lambda _msg: None)
    meta = json.loads((out_dir / STATE_DIR / "meta.json").read_text(encoding="utf-8"))
    rates = rates or DailyRates(**meta["daily"])
    day = meta["day"] + 1
    as_of = date.fromisoformat(meta["as_of"]) + timedelta(days=1)
    seed = meta["seed"]
    world = World.load(out_dir / STATE_DIR)
    ctx = Context(world, as_of, DirtRates.from_dict(meta["dirt"]), fresh=True)
    catalog = catalog_by_id()
    gt_dir = Path(meta["ground_truth_dir"])
    summary = SimulationSummary(as_of, {}, out_dir, gt_dir)

    datasets = meta["datasets"]
    new_persons = _grow_persons(
        world,
        round(rates.insert * datasets["gongan.population"]["rows"]),
        np.random.default_rng([seed, 3, day, 0]),
        as_of,
    )
    new_firms = _grow_enterprises(
        world,
        round(rates.insert * datasets["gongshang.enterprise_registration"]["rows"]),
        np.random.default_rng([seed, 3, day, 1]),
        as_of,
    )
    fresh_codes = {
        "gongan.population": new_persons,
        "gongshang.enterprise_registration": new_firms + ENTERPRISE_BASE,
    }

    for ds_id, plan in PLANS.items():
        info = datasets[ds_id]
        view = catalog[ds_id]
        say(f"advancing {ds_id} to {as_of}")
        rng = np.random.default_rng([seed, 4, day, info["index"]])
        n_rows = info["rows"]
        counts = {k: round(getattr(rates, k) * n_rows) for k in ("update", "insert", "delete")}
        if view.source.kind == "sql":
            url = meta["sql_urls"].get(view.source.connection_id)
            done = _advance_sql(
                plan,
                view,
                ctx,
                rng,
                info,
                counts,
                fresh_codes.get(ds_id),
                url or f"sqlite:///{sqlite_path(out_dir, view)}",
                gt_dir,
            )
        else:
            done = _advance_drop(plan, view, ctx, rng, info, counts, out_dir, gt_dir, seed, day)
        summary.updates[ds_id], summary.inserts[ds_id], summary.deletes[ds_id] = done
        info["rows"] += done[1] - (0 if view.source.kind == "sql" else done[2])
        info["next_key"] += done[1]
        summary.rows[ds_id] = info["rows"]

    world.save(out_dir / STATE_DIR)
    meta.update(as_of=as_of.isoformat(), day=day, datasets=datasets)
    write_json(out_dir / STATE_DIR / "meta.json", meta)
    return summary


def _grow_persons(world: World, n: int, rng: np.random.Generator, as_of: date) -> np.ndarray:
    """New residents (births and arrivals); returns their row numbers."""
    start = len(world.persons)
    if n:
        taken = world.persons["id_no"].to_numpy(dtype=str)
        new = draw_persons(n, rng, as_of, taken_ids=taken, newborn_share=0.4)
        world.persons = pd.concat([world.persons, new], ignore_index=True)
    return np.arange(start, len(world.persons))


def _grow_enterprises(world: World, n: int, rng: np.random.Generator, as_of: date) -> np.ndarray:
    """Firms registered today; returns their row numbers."""
    start = len(world.enterprises)
    if n:
        owners = adults(world.persons, as_of, 22, 75)
        new = draw_enterprises(
            n, rng, as_of, owners, taken=world.enterprises, established_today=True
        )
        world.enterprises = pd.concat([world.enterprises, new], ignore_index=True)
    return np.arange(start, len(world.enterprises))


def _keys(plan: Plan, numbers: np.ndarray) -> list[str]:
    assert plan.key_prefix, "SQL datasets have running-number keys"
    return list(np.strings.add(plan.key_prefix, np.strings.zfill(numbers.astype("U12"), 10)))


def _live_keys(engine: Engine, view: DatasetView, plan: Plan, candidates: list[str]) -> set[str]:
    """Those of ``candidates`` that exist and are neither deleted nor excluded."""
    table, key = view.source.table, view.key
    where = f"{plan.delete[0]} <> :flag" if plan.delete else "1 = 1"
    found: set[str] = set()
    with engine.connect() as conn:
        for i in range(0, len(candidates), 500):
            chunk = candidates[i : i + 500]
            marks = ", ".join(f":k{j}" for j in range(len(chunk)))
            params = {f"k{j}": k for j, k in enumerate(chunk)}
            if plan.delete:
                params["flag"] = plan.delete[1]
            sql = f'SELECT "{key}" FROM "{table}" WHERE {where} AND "{key}" IN ({marks})'
            found.update(r[0] for r in conn.execute(text(sql), params))
    return found


def _advance_sql(
    plan: Plan,
    view: DatasetView,
    ctx: Context,
    rng: np.random.Generator,
    info: dict,
    counts: dict[str, int],
    fresh: np.ndarray | None,
    url: str,
    gt_dir: Path,
) -> tuple[int, int, int]:
    engine = create_engine(url)
    table, key = view.source.table, view.key
    try:
        if plan.pending_filter:
            with engine.connect() as conn:
                pending = [
                    r[0]
                    for r in conn.execute(
                        text(
                            f'SELECT "{key}" FROM "{table}" WHERE {plan.pending_filter} '
                            f'ORDER BY "{key}"'
                        )
                    )
                ]
            to_update = [
                pending[i] for i in np.sort(rng.permutation(len(pending))[: counts["update"]])
            ]
            to_delete: list[str] = []
        else:
            wanted = counts["update"] + (counts["delete"] if plan.delete else 0)
            numbers = rng.choice(
                np.arange(1, info["next_key"] + 1),
                min(info["next_key"], wanted * 2 + 10),
                replace=False,
            )
            candidates = _keys(plan, numbers)
            live = _live_keys(engine, view, plan, candidates)
            chosen = [k for k in candidates if k in live][:wanted]
            to_update, to_delete = chosen[: counts["update"]], chosen[counts["update"] :]
        now = iso_datetimes(
            office_seconds(np.full(len(to_update) + len(to_delete), ctx.today), rng)
        )
        values = plan.update(ctx, len(to_update), rng)
        with engine.begin() as conn:
            if to_update:
                sets = ", ".join(f'"{c}" = :{c}' for c in [*values, "updated_at"])
                params = [
                    {
                        **{c: _text_or_null(v[i]) for c, v in values.items()},
                        "updated_at": str(now[i]),
                        "_key": k,
                    }
                    for i, k in enumerate(to_update)
                ]
                conn.execute(text(f'UPDATE "{table}" SET {sets} WHERE "{key}" = :_key'), params)
            if to_delete and plan.delete:
                col, flag = plan.delete
                conn.execute(
                    text(
                        f'UPDATE "{table}" SET "{col}" = :flag, updated_at = :ts '
                        f'WHERE "{key}" = :_key'
                    ),
                    [
                        {"flag": flag, "ts": str(now[len(to_update) + i]), "_key": k}
                        for i, k in enumerate(to_delete)
                    ],
                )
        codes = (
            fresh
            if fresh is not None
            else _insert_candidates(plan, ctx, rng, gt_dir, view, counts["insert"])
        )
        frame, truth = render(plan, view, ctx, codes[: counts["insert"]], rng, info["next_key"])
        if len(frame):
            names = list(view.fields)
            insert = text(
                f'INSERT INTO "{table}" ({", ".join(quote(c) for c in names)}) '
                f"VALUES ({', '.join(':' + c for c in names)})"
            )
            records = frame.astype(object).where(frame.notna(), None).to_dict("records")
            with engine.begin() as conn:
                conn.execute(insert, records)
            _append_truth(gt_dir / f"{view.id}.parquet", truth)
        return len(to_update), len(frame), len(to_delete)
    finally:
        engine.dispose()


def _insert_candidates(
    plan: Plan, ctx: Context, rng: np.random.Generator, gt_dir: Path, view: DatasetView, n: int
) -> np.ndarray:
    """Entities the dataset does not hold yet (cases: any applicant)."""
    if plan.id == "xingzheng.service_case":
        return plan.draw(ctx, n, rng)
    held = pd.read_parquet(gt_dir / f"{view.id}.parquet", columns=["entity_id"])["entity_id"]
    return _not_held(plan, ctx, rng, entity_codes(held.to_numpy(dtype=str)), n)


def _not_held(
    plan: Plan, ctx: Context, rng: np.random.Generator, held: np.ndarray, n: int
) -> np.ndarray:
    pool = plan.draw(ctx, 10**12, rng)
    return pool[~np.isin(pool, held)][:n]


def entity_codes(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`simulator.world.entity_ids`."""
    ids = np.asarray(ids, dtype=str)
    number = np.strings.slice(ids, 1, None).astype(np.int64) - 1
    return np.where(np.strings.startswith(ids, "E"), number + ENTERPRISE_BASE, number)


def _append_truth(path: Path, truth: pd.DataFrame) -> None:
    old = pd.read_parquet(path)
    merged = pd.concat([old, truth], ignore_index=True)
    sink = ParquetSink(path)
    sink.write(merged)
    sink.close()


def _advance_drop(
    plan: Plan,
    view: DatasetView,
    ctx: Context,
    rng: np.random.Generator,
    info: dict,
    counts: dict[str, int],
    out_dir: Path,
    gt_dir: Path,
    seed: int,
    day: int,
) -> tuple[int, int, int]:
    """Next full snapshot: yesterday's rows minus deletions, some updated, new ones appended."""
    source = pq.ParquetFile(state_path(out_dir, view.id))
    n = source.metadata.num_rows
    picked = rng.choice(n, min(n, counts["update"] + counts["delete"]), replace=False)
    update_rows = np.sort(picked[: counts["update"]])
    delete_rows = np.sort(picked[counts["update"] :])
    sink = open_sink(out_dir, view, {}, ctx.as_of)
    new_state = ParquetSink(state_path(out_dir, view.id))
    gt = ParquetSink(gt_dir / f"{view.id}.parquet")
    held: list[np.ndarray] = []
    offset = 0
    try:
        for batch_no, record_batch in enumerate(source.iter_batches(batch_size=200_000)):
            frame = record_batch.to_pandas()
            brng = np.random.default_rng([seed, 5, day, batch_no])
            rows = np.arange(offset, offset + len(frame))
            offset += len(frame)
            upd = np.isin(rows, update_rows)
            if upd.any():
                k = int(upd.sum())
                for col, vals in plan.update(ctx, k, brng).items():
                    frame.loc[upd, col] = vals
                frame.loc[upd, "updated_at"] = iso_datetimes(
                    office_seconds(np.full(k, ctx.today), brng)
                )
            frame = frame[~np.isin(rows, delete_rows)]
            held.append(entity_codes(frame["_entity_id"].to_numpy(dtype=str)))
            _write_state_batch(frame, view, sink, new_state, gt)
        codes = _not_held(
            plan, ctx, rng, np.concatenate(held) if held else np.array([]), counts["insert"]
        )
        ins, truth = render(plan, view, ctx, codes, rng, info["next_key"])
        if len(ins):
            _write_state_batch(with_truth(ins, truth), view, sink, new_state, gt)
    finally:
        sink.close()
        new_state.close()
        gt.close()
    return len(update_rows), len(ins), len(delete_rows)


def _write_state_batch(
    frame: pd.DataFrame, view: DatasetView, sink: Sink, state: ParquetSink, gt: ParquetSink
) -> None:
    frame = frame.reset_index(drop=True)
    sink.write(frame[list(view.fields)])
    state.write(frame)
    truth = pd.DataFrame(
        {"source_key": frame[view.key]} | {c: frame["_" + c] for c in GT_COLUMNS[1:]}
    )
    gt.write(truth)


def _text_or_null(value: object) -> str | None:
    """SQL text as a legacy system holds it: a missing value is NULL, never the word None."""
    return None if value is None or value is pd.NA else str(value)


def simulated_date(out_dir: Path) -> date:
    """The date the simulated departments are at (raises FileNotFoundError if none)."""
    meta = json.loads((out_dir / STATE_DIR / "meta.json").read_text(encoding="utf-8"))
    return date.fromisoformat(meta["as_of"])
