"""The true world (persons + enterprises) that every department sees a part of."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.enterprises import draw_enterprises
from simulator.fmt import day_number
from simulator.population import draw_persons

FULL_PERSONS = 3_000_000
FULL_ENTERPRISES = 250_000
ENTERPRISE_BASE = 1 << 40  # entity code of enterprise i is ENTERPRISE_BASE + i


@dataclass
class World:
    persons: pd.DataFrame
    enterprises: pd.DataFrame

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.persons.to_parquet(state_dir / "persons.parquet", index=False)
        self.enterprises.to_parquet(state_dir / "enterprises.parquet", index=False)

    @classmethod
    def load(cls, state_dir: Path) -> World:
        return cls(
            pd.read_parquet(state_dir / "persons.parquet"),
            pd.read_parquet(state_dir / "enterprises.parquet"),
        )


def build_world(seed: int, scale: float, as_of: date) -> World:
    """Draw the true population once: depends only on seed, scale and as_of."""
    rng = np.random.default_rng([seed, 0])
    persons = draw_persons(max(1, round(FULL_PERSONS * scale)), rng, as_of)
    owners = adults(persons, as_of, 22, 75)
    enterprises = draw_enterprises(max(1, round(FULL_ENTERPRISES * scale)), rng, as_of, owners)
    return World(persons, enterprises)


def adults(persons: pd.DataFrame, as_of: date, low: int, high: int) -> np.ndarray:
    """Row numbers of persons aged ``low`` to ``high`` on ``as_of``."""
    age = (day_number(as_of) - persons["birth_day"].to_numpy()) / 365.2425
    return np.flatnonzero((age >= low) & (age < high))


def text(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A text column as a fixed-width numpy array (what ``np.strings`` works on)."""
    return frame[column].to_numpy(dtype=str)


def entity_ids(codes: np.ndarray) -> np.ndarray:
    """True entity ids: ``P00000001`` for persons, ``E0000001`` for enterprises."""
    codes = np.asarray(codes, dtype=np.int64)
    firm = codes >= ENTERPRISE_BASE
    number = np.where(firm, codes - ENTERPRISE_BASE, codes) + 1
    person = np.strings.add("P", np.strings.zfill(number.astype("U12"), 8))
    ent = np.strings.add("E", np.strings.zfill(number.astype("U12"), 7))
    return np.where(firm, ent, person)


def entity_kinds(codes: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(codes) >= ENTERPRISE_BASE, "enterprise", "person")
