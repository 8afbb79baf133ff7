"""Benchmark: unification at a scale, and ``lake match`` against Splink 5 on an ID-less list.

1. Simulates the departments (unless ``--workdir`` already holds a night), extracts and
   validates every source, then times the ``unify`` step in its own process (wall time,
   peak RSS) and scores the crosswalks against the ground truth (``lake score``'s figures).
2. Builds an ID-less person list (``--list-rows``, default 200,000) from the night's clean
   health and insurance records with every ID dropped and a third of the rows given the
   counter dirt (typos, swapped dates, changed phones, truncated names); clusters it with
   the lake's matcher and with Splink 5 on DuckDB (its recommended comparisons, u by random
   sampling, λ from deterministic rules, m by EM), each in its own process, and reports time,
   peak RSS and pairwise precision/recall/F1 beside each other.

    .venv/bin/python bench/bench_unify.py --scale 0.125     # ≈ 1 million records
    (Splink needs the bench extra: pip install 'yimen-lake[bench]')
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DS = date(2026, 11, 28)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settings(workdir: Path):
    from etl.settings import LakeSettings

    return LakeSettings.under(workdir)


def prepare_step(workdir: Path, scale: float) -> None:
    """Simulate, extract and validate one night (skipped when it is already there)."""
    import simulator
    from etl.connections import SourceConnection
    from etl.nightly import Night, extract_dataset, open_night, validate_dataset

    settings = _settings(workdir)
    started = time.perf_counter()
    summary = simulator.build_departments(
        settings.departments_dir, scale=scale, as_of=DS, ground_truth_dir=settings.ground_truth_dir
    )
    night = Night.open(DS, "bench-unify", settings)
    open_night(night)
    specs = json.loads((settings.departments_dir / "connections.json").read_text())
    for d in night.catalog.datasets:
        spec = specs[d.source.connection_id]
        extract_dataset(night, d.id, SourceConnection(conn_id=d.source.connection_id, **spec))
        validate_dataset(night, d.id)
    rows = sum(summary.rows.values())
    print(json.dumps({"step": "prepare", "rows": rows, "seconds": _since(started)}))


def unify_step(workdir: Path) -> None:
    from etl.nightly import Night, unify

    night = Night.open(DS, "bench-unify", _settings(workdir))
    started = time.perf_counter()
    result = unify(night)
    seconds = _since(started)
    figures = night.store.unification(DS)
    print(
        json.dumps(
            {
                "step": "unify",
                "clean_rows": figures.clean_rows,
                "persons": figures.persons,
                "enterprises": figures.enterprises,
                "seconds": seconds,
                "peak_rss_mb": round(_peak_rss_mb()),
                "candidate_pairs": figures.details["candidate_pairs"],
                "enterprise_fallback": figures.details.get("enterprise_fallback"),
                "seconds_parts": figures.details.get("seconds_parts"),
                "seconds_read": figures.details.get("seconds_read"),
                "summary": result["summary"],
            }
        )
    )


def score_step(workdir: Path) -> None:
    from etl.score import pairwise_scores, read_truth

    settings = _settings(workdir)
    lake = settings.lake()
    truth = read_truth(settings.ground_truth_dir)
    out = {"step": "score"}
    for entity in ("person", "enterprise"):
        xref = lake.read_partition(lake.unified_partition(f"{entity}_xref", DS)).to_pandas()
        out[entity] = {
            s.rule: {"rows": s.rows, "P": _r(s.precision), "R": _r(s.recall), "F1": _r(s.f1)}
            for s in pairwise_scores(xref, f"{entity}_id", truth)
        }
    out["blocking_recall"] = blocking_recall(workdir)
    print(json.dumps(out, ensure_ascii=False))


def blocking_recall(workdir: Path) -> float:
    """Share of true (ID-less row, other row) pairs that blocking puts in front of the model."""
    from etl.nightly import Night
    from etl.score import clean_key, read_truth
    from etl.unify import read_mentions
    from etl.unify_person import blocking_candidates, key_views
    from etl.unify_workspace import workspace

    settings = _settings(workdir)
    night = Night.open(DS, "bench-unify", settings)
    with workspace(settings.var / "tmp", "1500MB") as ws:
        read_mentions(ws, night.catalog, DS, night.lake, night.store)
        key_views(ws)
        cands = blocking_candidates(ws)
        m = ws.frame(
            "SELECT row, dataset, source_key, role, id_no IS NULL AS probe FROM person_mention"
        )
    m = m[m["role"] == "subject"]
    truth = read_truth(settings.ground_truth_dir)
    m = m.assign(source_key=clean_key(m["source_key"])).merge(
        truth, on=["dataset", "source_key"], how="left"
    )
    n = int(m["row"].max()) + 1
    found = np.concatenate([cands.left * n + cands.right, cands.right * n + cands.left])
    rows = pd.DataFrame({"e": m["entity_id"].to_numpy(), "i": m["row"].to_numpy()})
    pairs = rows[m["probe"].to_numpy()].merge(rows, on="e")
    pairs = pairs[pairs["i_x"] != pairs["i_y"]]
    hit = np.isin(pairs["i_x"].to_numpy() * n + pairs["i_y"].to_numpy(), found).sum()
    return _r(hit / max(len(pairs), 1))


def list_step(workdir: Path, n: int) -> None:
    """An ID-less list of ``n`` rows with its truth, from the night's clean person records."""
    from catalog.definitions import load_catalog
    from etl.score import clean_key, read_truth
    from etl.zones import RAW_CLEAN
    from simulator.dirt import DirtTargets, _no_id_dirt
    from simulator.rates import DirtRates

    settings = _settings(workdir)
    lake = settings.lake()
    catalog = load_catalog()
    parts = []
    for dataset_id in ("weiji.health_record", "renshe.insured_person"):
        d = catalog.dataset(dataset_id)
        t = lake.read_partition(lake.dataset_partition(RAW_CLEAN, d, DS)).to_pandas()
        key = d.key[0]
        parts.append(
            pd.DataFrame(
                {
                    "dataset": dataset_id,
                    "source_key": t[key],
                    "姓名": t["name"],
                    "出生日期": t["birth_date"].astype("str"),
                    "电话": t["phone"],
                    "性别": t["sex"],
                }
            )
        )
    rows = pd.concat(parts, ignore_index=True)
    rows = rows.sample(n=min(n, len(rows)), random_state=1).reset_index(drop=True)
    truth = read_truth(settings.ground_truth_dir)
    rows = rows.assign(source_key=clean_key(rows["source_key"])).merge(
        truth, on=["dataset", "source_key"], how="left"
    )
    rng = np.random.default_rng(5)
    dirty = rng.random(len(rows)) < 1 / 3
    rates = DirtRates(
        birth_typo=0.15, birth_swapped=0.1, phone_changed=0.2, phone_typo=0.1, name_truncated=0.1
    )
    targets = DirtTargets(birth_date="出生日期", phone="电话", person_name="姓名")
    rows["电话"] = rows["电话"].astype(object)
    _no_id_dirt(rows, targets, rates, rng, dirty, {})
    rows.to_parquet(workdir / "idless_list.parquet", index=False)
    print(json.dumps({"step": "list", "rows": len(rows), "entities": rows["entity_id"].nunique()}))


def lake_match_step(workdir: Path) -> None:
    from etl.match_list import match_list

    rows = pd.read_parquet(workdir / "idless_list.parquet")
    people = rows[["姓名", "出生日期", "电话", "性别"]]
    roles = {"name": "姓名", "birth_date": "出生日期", "phone": "电话", "sex": "性别"}
    started = time.perf_counter()
    result = match_list(people, roles, workdir / "idless_list.parquet")
    seconds = _since(started)
    scores = _pairwise(result.rows["cluster_id"].to_numpy(), rows["entity_id"].to_numpy())
    print(
        json.dumps(
            {"step": "lake match", "seconds": seconds, "peak_rss_mb": round(_peak_rss_mb())}
            | scores
        )
    )


def splink_step(workdir: Path) -> None:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    rows = pd.read_parquet(workdir / "idless_list.parquet")
    df = pd.DataFrame(
        {
            "unique_id": np.arange(len(rows)),
            "name": rows["姓名"].str.replace(r"\s+", "", regex=True),
            "dob": rows["出生日期"],
            "phone": rows["电话"].astype("str").str.replace(r"[^0-9]", "", regex=True),
            "sex": rows["性别"],
        }
    )
    started = time.perf_counter()
    db_api = DuckDBAPI()
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("name"),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.LevenshteinAtThresholds("phone", [1, 2]),
            cl.ExactMatch("sex"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("dob", "substr(name, 1, 1)"),
            block_on("name", "substr(dob, 1, 4)"),
            block_on("phone"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(db_api.register(df), settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("name", "dob", "phone")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("phone"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=0.5
    ).as_pandas_dataframe()
    seconds = _since(started)
    cluster = clusters.sort_values("unique_id")["cluster_id"].to_numpy()
    scores = _pairwise(cluster, rows["entity_id"].to_numpy())
    print(
        json.dumps(
            {"step": "splink 5", "seconds": seconds, "peak_rss_mb": round(_peak_rss_mb())} | scores
        )
    )


def _pairwise(cluster: np.ndarray, entity: np.ndarray) -> dict[str, float]:
    frame = pd.DataFrame({"c": cluster.astype(str), "e": entity})

    def pairs(sizes: pd.Series) -> int:
        return int((sizes * (sizes - 1) // 2).sum())

    both = pairs(frame.groupby(["c", "e"]).size())
    pred, true = pairs(frame.groupby("c").size()), pairs(frame.groupby("e").size())
    p, r = both / max(pred, 1), both / max(true, 1)
    return {"P": _r(p), "R": _r(r), "F1": _r(2 * p * r / (p + r) if p + r else 0.0)}


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 1)


def _r(x: float) -> float:
    return round(float(x), 4)


STEPS = {
    "prepare": lambda a: prepare_step(a.workdir, a.scale),
    "unify": lambda a: unify_step(a.workdir),
    "score": lambda a: score_step(a.workdir),
    "list": lambda a: list_step(a.workdir, a.list_rows),
    "lake_match": lambda a: lake_match_step(a.workdir),
    "splink": lambda a: splink_step(a.workdir),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.125)
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench-unify")
    parser.add_argument("--list-rows", type=int, default=200_000)
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", choices=sorted(STEPS), help="Run only these steps.")
    args = parser.parse_args()
    if args.step:
        STEPS[args.step](args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    for step in args.only or list(STEPS):
        if step == "prepare" and (_settings(args.workdir).var / "catalog.db").exists():
            continue
        cmd = [sys.executable, __file__, "--step", step, "--workdir", str(args.workdir)]
        cmd += ["--scale", str(args.scale), "--list-rows", str(args.list_rows)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
