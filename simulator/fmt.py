"""Vectorised date/time formatting: days and seconds since 1970 to the text systems hold."""

from __future__ import annotations

from datetime import date

import numpy as np


def day_number(d: date) -> int:
    """Days since 1970-01-01."""
    return (d - date(1970, 1, 1)).days


def iso_dates(days: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` for an array of day numbers."""
    return np.datetime_as_string(np.asarray(days, dtype="int64").astype("datetime64[D]"), unit="D")


def yyyymmdd(days: np.ndarray) -> np.ndarray:
    """Day numbers as integers ``YYYYMMDD`` (the birth-date part of a resident ID)."""
    d = np.asarray(days, dtype="int64").astype("datetime64[D]")
    year = d.astype("datetime64[Y]")
    month = d.astype("datetime64[M]")
    y = year.astype(np.int64) + 1970
    m = (month - year.astype("datetime64[M]")).astype(np.int64) + 1
    dd = (d - month.astype("datetime64[D]")).astype(np.int64) + 1
    return y * 10000 + m * 100 + dd


def iso_datetimes(seconds: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD HH:MM:SS`` (clean and sortable, as ``updated_at`` must be)."""
    if len(seconds) == 0:  # np.strings cannot size an empty result
        return np.array([], dtype="U19")
    text = np.datetime_as_string(
        np.asarray(seconds, dtype="int64").astype("datetime64[s]"), unit="s"
    )
    return np.strings.replace(text, "T", " ")


def office_seconds(days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A moment during office hours (08:30-18:00) of each day, as seconds since 1970."""
    days = np.asarray(days, dtype=np.int64)
    return days * 86400 + rng.integers(8 * 3600 + 1800, 18 * 3600, len(days))


def updated_seconds(start_days: np.ndarray, end_day: int, rng: np.random.Generator) -> np.ndarray:
    """A last-update time between each row's creation day and ``end_day`` (inclusive).

    Most rows were last touched long ago, a few recently: the gap is drawn uniformly.
    """
    start = np.minimum(np.asarray(start_days, dtype=np.int64), end_day)
    day = start + (rng.random(len(start)) * (end_day - start + 1)).astype(np.int64)
    return office_seconds(np.minimum(day, end_day), rng)
