"""Valid identifiers drawn at random, for rule tests (python-stdnum is the oracle there)."""

from __future__ import annotations

import numpy as np

from catalog.identifiers import make_org_codes, make_resident_ids, make_usccs

USCC_ALPHABET = list("0123456789ABCDEFGHJKLMNPQRTUWXY")


def resident_ids(rng: np.random.Generator, n: int, divisions: list[str]) -> np.ndarray:
    """IDs of people born 1930–2019 under the given division codes."""
    days = rng.integers(0, 365 * 90, n).astype("timedelta64[D]") + np.datetime64("1930-01-01")
    births = np.char.replace(days.astype("U10"), "-", "").astype(np.int64)
    codes = rng.choice([int(c) for c in divisions], n)
    return make_resident_ids(codes, births, rng.integers(0, 1000, n))


def usccs(rng: np.random.Generator, n: int, divisions: list[str]) -> np.ndarray:
    bodies = ["".join(r) for r in rng.choice(USCC_ALPHABET, (n, 8))]
    orgs = make_org_codes(np.array(bodies))
    return make_usccs(rng.choice(["91", "92", "93"], n), rng.choice(divisions, n), orgs)
