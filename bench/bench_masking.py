"""Benchmark: masking operators on 8 million values, beside Microsoft Presidio's anonymizer.

Prints values/second per operator (single core: Arrow's thread pool is set to one thread),
tokens/second on 8 million ID numbers with 3 million distinct, and Presidio's ``mask`` and
``hash`` operators on the same columns. Presidio works one string at a time, so it runs on
a sample and its rate is extrapolated to the full column (said so in the output). Targets
(issue 11): mask >= 20 million values/s, tokens >= 1 million distinct values/s.
Not part of the test run; Presidio comes with the ``bench`` extra.

    .venv/bin/python bench/bench_masking.py            # 8 million values
    .venv/bin/python bench/bench_masking.py --n 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from catalog.identifiers import JIANGMEN_DIVISIONS, make_resident_ids  # noqa: E402
from masking.keys import MasterKey  # noqa: E402
from masking.operators import (  # noqa: E402
    Band,
    Context,
    Fake,
    Generalise,
    Mask,
    Round,
    Token,
)

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡")
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红建文辉力春兰海燕志宇鹏飞慧颖婷")


def columns(n: int, distinct_ids: int, seed: int = 7) -> dict[str, pa.Array]:
    """Realistic columns: names of 2-4 characters, mobiles, IDs, birth dates, addresses."""
    rng = np.random.default_rng(seed)
    names = np.char.add(np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)],
                        np.array(GIVEN)[rng.integers(0, len(GIVEN), n)])  # fmt: skip
    third = rng.random(n) < 0.7
    names[third] = np.char.add(names[third], np.array(GIVEN)[rng.integers(0, len(GIVEN), n)][third])
    phones = np.char.add(np.char.add("13", rng.integers(0, 10, n).astype("U1")),
                         np.char.zfill(rng.integers(0, 10**8, n).astype("U8"), 8))  # fmt: skip
    births = np.datetime64("1940-01-01") + rng.integers(0, 30000, n).astype("timedelta64[D]")
    codes = np.array(list(JIANGMEN_DIVISIONS), dtype=np.int64)
    pool_birth = births[:distinct_ids]
    yyyymmdd = np.char.replace(pool_birth.astype("U10"), "-", "").astype(np.int64)
    pool = make_resident_ids(
        codes[rng.integers(0, len(codes), distinct_ids)], yyyymmdd,
        rng.integers(0, 1000, distinct_ids),
    )  # fmt: skip
    ids = pool[rng.integers(0, distinct_ids, n)]
    districts = np.array(list(JIANGMEN_DIVISIONS.values()))[rng.integers(0, 7, n)]
    addresses = np.char.add(np.char.add("广东省江门市", districts),
                            np.char.add(rng.integers(1, 20000, n).astype("U5"), "号"))  # fmt: skip
    yuan = rng.integers(1_000, 50_000, n)
    return {
        "name": pa.array(names, pa.string()),
        "phone": pa.array(phones, pa.string()),
        "id_no": pa.array(ids, pa.string()),
        "birth_date": pa.array(births.astype("datetime64[D]"), pa.date32()),
        "address": pa.array(addresses, pa.string()),
        "amount": pa.array(yuan, pa.int64()).cast(pa.decimal128(22, 2)),
        "division": pa.array(np.array(list(JIANGMEN_DIVISIONS))[rng.integers(0, 7, n)]),
    }


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def presidio_rates(values: pa.Array, sample: int) -> dict[str, float]:
    """Presidio per string, on ``sample`` values: operators directly and through the engine."""
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult
    from presidio_anonymizer.operators import Hash
    from presidio_anonymizer.operators import Mask as PMask

    texts = values.slice(0, sample).to_pylist()
    mask, hasher = PMask(), Hash()
    mask_params = {"masking_char": "*", "chars_to_mask": 16, "from_end": False}
    engine = AnonymizerEngine()
    few = texts[: max(sample // 10, 1)]

    def engine_run(op: str, params: dict) -> None:
        for t in few:
            engine.anonymize(
                text=t,
                analyzer_results=[RecognizerResult("ID", 1, len(t) - 1, 1.0)],
                operators={"ID": OperatorConfig(op, params)},
            )

    return {
        "presidio Mask.operate (per string)": sample
        / timed(lambda: [mask.operate(t[1:-1], mask_params) for t in texts]),
        "presidio Hash.operate sha256 (per string)": sample
        / timed(lambda: [hasher.operate(t, {"hash_type": "sha256"}) for t in texts]),
        "presidio AnonymizerEngine mask": len(few) / timed(lambda: engine_run("mask", mask_params)),
        "presidio AnonymizerEngine hash": len(few)
        / timed(lambda: engine_run("hash", {"hash_type": "sha256"})),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8_000_000)
    parser.add_argument("--distinct", type=int, default=3_000_000)
    parser.add_argument("--presidio-sample", type=int, default=200_000)
    args = parser.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    n = args.n
    distinct = min(args.distinct, n)
    print(f"generating {n:,} values per column ({distinct:,} distinct ID numbers)…", flush=True)
    cols = columns(n, distinct)
    master = MasterKey.from_text("00" * 32)
    token_ctx = Context(key=master.token_key("bench"), reference_date=dt.date(2025, 1, 1))
    fake_ctx = Context(key=master.fake_key("bench"))
    cases: list[tuple[str, str, object, Context]] = [
        ("mask(keep_first=1) name", "name", Mask(keep_first=1), token_ctx),
        ("mask(keep_first=3, keep_last=4) phone", "phone", Mask(3, 4), token_ctx),
        ("mask(keep_first=1, keep_last=1) id_no", "id_no", Mask(1, 1), token_ctx),
        ("token() id_no", "id_no", Token(), token_ctx),
        ("generalise(year_month) birth_date", "birth_date", Generalise("year_month"), token_ctx),
        ("generalise(year) birth_date", "birth_date", Generalise("year"), token_ctx),
        ("generalise(age_band) birth_date", "birth_date", Generalise("age_band"), token_ctx),
        ("generalise(district) address", "address", Generalise("district"), token_ctx),
        ("generalise(prefix) division", "division", Generalise("prefix"), token_ctx),
        ("round(to=100) amount", "amount", Round(to=100), token_ctx),
        ("band(width=1000) amount", "amount", Band(width=1000), token_ctx),
        ("fake(id_no) id_no", "id_no", Fake("id_no"), fake_ctx),
        ("fake(name) name", "name", Fake("name"), fake_ctx),
        ("fake(phone) phone", "phone", Fake("phone"), fake_ctx),
    ]
    print(f"\n{'operator':42} {'seconds':>8} {'M values/s':>11}")
    rates = {}
    for label, column, op, ctx in cases:
        seconds = timed(lambda op=op, column=column, ctx=ctx: op.apply(cols[column], ctx))
        rates[label] = n / seconds
        print(f"{label:42} {seconds:8.2f} {n / seconds / 1e6:11.2f}", flush=True)
    token_seconds = n / rates["token() id_no"]
    print(
        f"\ntokens: {n:,} values with {distinct:,} distinct in {token_seconds:.2f} s = "
        f"{distinct / token_seconds / 1e6:.2f} M distinct values/s "
        f"({n / token_seconds / 1e6:.2f} M values/s)"
    )
    all_distinct = cols["phone"]
    seconds = timed(lambda: Token().apply(all_distinct, token_ctx))
    print(f"tokens, {n:,} all-distinct phones: {n / seconds / 1e6:.2f} M distinct values/s")
    print(f"\nPresidio, per string on a sample of {args.presidio_sample:,} (engine: a tenth of")
    print(f"that), extrapolated to {n:,} values:")
    for label, rate in presidio_rates(cols["id_no"], args.presidio_sample).items():
        print(f"{label:42} {n / rate:8.1f} s for {n:,} {rate / 1e6:11.3f} M values/s")
    mask_rate = rates["mask(keep_first=1, keep_last=1) id_no"] / 1e6
    print(f"\ntargets: mask ≥ 20 M values/s (id_no mask: {mask_rate:.1f}); "
          f"tokens ≥ 1 M distinct/s ({distinct / token_seconds / 1e6:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
