"""The true population of persons: drawn once per seed, whole columns at a time.

Persons are stored as small integer codes into :mod:`simulator.vocab` (name parts, town,
road) plus the resident ID; strings are composed only when a department view is written,
which keeps millions of persons in a few hundred MB.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from catalog.identifiers import make_resident_ids
from simulator import vocab
from simulator.fmt import day_number, iso_dates, yyyymmdd

_TOWN_COUNT = np.bincount(vocab.TOWN_DISTRICT, minlength=len(vocab.DISTRICT_CODES))
_TOWN_OFFSET = np.concatenate([[0], np.cumsum(_TOWN_COUNT)[:-1]])
_MALE_IDX = np.searchsorted(vocab.GIVEN_CHARS, vocab.GIVEN_MALE)
_FEMALE_IDX = np.searchsorted(vocab.GIVEN_CHARS, vocab.GIVEN_FEMALE)
_GIVEN_WITH_EMPTY = np.append(vocab.GIVEN_CHARS, "")  # index -1 -> no second character
_RETIRED = [vocab.RETIRED_BY_DISTRICT[c] for c in vocab.DISTRICT_CODES]
_RETIRED_TABLE = np.array([(r * 2)[:2] for r in _RETIRED])  # pad each to 2 choices
_RETIRED_COUNT = np.array([len(r) for r in _RETIRED])
_XINHUI = vocab.DISTRICT_CODES.index("440705")
NAMESAKE_SHARE = 0.01  # persons who share name and birth date with another person


def draw_persons(
    n: int,
    rng: np.random.Generator,
    as_of: date,
    *,
    taken_ids: np.ndarray | None = None,
    newborn_share: float = 0.0,
    namesake_share: float = NAMESAKE_SHARE,
) -> pd.DataFrame:
    """``n`` persons living in Jiangmen on ``as_of``, with unique resident IDs.

    ``taken_ids`` are IDs already issued (new persons must not collide with them);
    ``newborn_share`` of the persons are born on ``as_of`` itself (daily inserts).
    """
    today = day_number(as_of)
    band = rng.choice(len(vocab.AGE_BAND_WEIGHTS), n, p=vocab.normalised(vocab.AGE_BAND_WEIGHTS))
    age_days = ((band + rng.random(n)) * 5 * 365.2425).astype(np.int32)
    age_days[rng.random(n) < newborn_share] = 0
    birth_day = (today - age_days).astype(np.int32)
    sex = (rng.random(n) < 0.49).astype(np.int8)  # 1 = female, ~51/49
    district = rng.choice(len(vocab.DISTRICT_CODES), n, p=vocab.normalised(vocab.DISTRICT_WEIGHTS))
    town = _TOWN_OFFSET[district] + (rng.random(n) * _TOWN_COUNT[district]).astype(int)
    birth_year = yyyymmdd(birth_day) // 10000

    division = np.array(vocab.DISTRICT_CODES)[district]
    outside = rng.random(n) < 0.12
    division[outside] = rng.choice(vocab.OUTSIDE_DIVISIONS, int(outside.sum()))
    retired = ~outside & (birth_year < 1994) & (rng.random(n) < 0.35)
    pick = (rng.random(n) * _RETIRED_COUNT[district]).astype(int)
    division[retired] = _RETIRED_TABLE[district[retired], pick[retired]]
    xinhui_city = (
        ~outside
        & (district == _XINHUI)
        & (birth_year >= 1992)
        & (birth_year <= 2002)
        & (rng.random(n) < 0.6)
    )
    division[xinhui_city] = vocab.XINHUI_CITY_CODE

    ids = _unique_ids(division, yyyymmdd(birth_day), sex, rng, taken_ids)

    given1 = np.where(sex == 0, rng.choice(_MALE_IDX, n), rng.choice(_FEMALE_IDX, n))
    given2 = np.where(sex == 0, rng.choice(_MALE_IDX, n), rng.choice(_FEMALE_IDX, n))
    given2[rng.random(n) < 0.25] = -1
    surname = rng.choice(len(vocab.SURNAME_CHARS), n, p=vocab.normalised(vocab.SURNAME_WEIGHTS))

    phone = rng.choice(vocab.MOBILE_PREFIXES, n).astype(np.int64) * 10**8 + rng.integers(
        0, 10**8, n
    )
    no_phone = (rng.random(n) < 0.05) | ((age_days < 12 * 365) & (rng.random(n) < 0.9))
    phone[no_phone] = 0
    street = vocab.TOWN_IS_STREET[town]
    household = np.where(rng.random(n) < np.where(street, 0.85, 0.25), 0, 1).astype(np.int8)
    _namesakes(sex, birth_day, surname, given1, given2, rng, namesake_share)
    return pd.DataFrame(
        {
            "id_no": ids,
            "sex": sex,
            "birth_day": birth_day,
            "district": district.astype(np.int8),
            "town": town.astype(np.int16),
            "road": rng.integers(0, len(vocab.ROADS), n).astype(np.int16),
            "house": (rng.geometric(0.02, n) % 400 + 1).astype(np.int16),
            "surname": surname.astype(np.int16),
            "given1": given1.astype(np.int16),
            "given2": given2.astype(np.int16),
            "phone": phone,
            "ethnicity": rng.choice(
                len(vocab.ETHNICITIES), n, p=vocab.normalised(vocab.ETHNICITY_WEIGHTS)
            ).astype(np.int8),
            "household": household,
        }
    )


def _namesakes(
    sex: np.ndarray,
    birth_day: np.ndarray,
    surname: np.ndarray,
    given1: np.ndarray,
    given2: np.ndarray,
    rng: np.random.Generator,
    share: float,
) -> None:
    """Give ``share`` of the persons the full name of another person born the same day.

    Different people with the same name and birth date (two 陈伟, born 1985-03-12) are what
    makes matching without an ID hard; in a city of millions they exist, so the world has
    them on purpose. Their IDs stay different (and valid): only the name is copied.
    """
    order = np.lexsort((birth_day, sex))
    same_day = np.zeros(len(sex), dtype=bool)
    same_day[1:] = (birth_day[order][1:] == birth_day[order][:-1]) & (
        sex[order][1:] == sex[order][:-1]
    )
    chosen = same_day & (rng.random(len(sex)) < share)
    to, source = order[chosen], order[np.flatnonzero(chosen) - 1]
    for codes in (surname, given1, given2):
        codes[to] = codes[source]


def _unique_ids(
    division: np.ndarray,
    birth: np.ndarray,
    sex: np.ndarray,
    rng: np.random.Generator,
    taken: np.ndarray | None,
) -> np.ndarray:
    """Resident IDs; a sequence number is redrawn until no two persons share an ID.

    Uniqueness is checked on the 17-digit body as an int64 (the check char follows from
    it), which sorts far faster than strings.
    """
    n = len(division)
    prefix = division.astype(np.int64) * 10**11 + np.asarray(birth, dtype=np.int64) * 1000
    seq = rng.integers(0, 500, n) * 2 + (1 - sex)  # odd = male
    taken_body = (
        np.strings.slice(np.asarray(taken, dtype="U18"), 0, 17).astype(np.int64)
        if taken is not None and len(taken)
        else None
    )
    for _ in range(50):
        body = prefix + seq
        _, first = np.unique(body, return_index=True)
        clash = np.ones(n, dtype=bool)
        clash[first] = False
        if taken_body is not None:
            clash |= np.isin(body, taken_body)
        if not clash.any():
            return make_resident_ids(division.astype(np.int64), birth, seq).astype("U18")
        seq[clash] = rng.integers(0, 500, int(clash.sum())) * 2 + (1 - sex[clash])
    raise RuntimeError("could not draw unique resident IDs")


def names(persons: pd.DataFrame) -> np.ndarray:
    """Full names (surname + one or two given characters)."""
    given = np.strings.add(
        vocab.GIVEN_CHARS[persons["given1"].to_numpy()],
        _GIVEN_WITH_EMPTY[persons["given2"].to_numpy()],
    )
    return np.strings.add(vocab.SURNAME_CHARS[persons["surname"].to_numpy()], given)


def addresses(persons: pd.DataFrame, *, with_province: bool = True) -> np.ndarray:
    """Registered addresses: 广东省江门市 + district + town + road + number."""
    district = np.array(vocab.DISTRICT_NAMES)[persons["district"].to_numpy()]
    out = np.strings.add(district, vocab.TOWN_NAMES[persons["town"].to_numpy()])
    out = np.strings.add(out, vocab.ROADS[persons["road"].to_numpy()])
    out = np.strings.add(out, persons["house"].to_numpy().astype("U4"))
    out = np.strings.add(out, "号")
    return np.strings.add("广东省江门市" if with_province else "江门市", out)


def sexes(persons: pd.DataFrame) -> np.ndarray:
    return np.array(["男", "女"])[persons["sex"].to_numpy()]


def birth_dates(persons: pd.DataFrame) -> np.ndarray:
    return iso_dates(persons["birth_day"].to_numpy())


def phones(persons: pd.DataFrame) -> np.ndarray:
    """Mobile numbers as text; None where the person has none on file."""
    phone = persons["phone"].to_numpy()
    out = phone.astype("U11").astype(object)
    out[phone == 0] = None
    return out


def ages(persons: pd.DataFrame, as_of: date) -> np.ndarray:
    return (day_number(as_of) - persons["birth_day"].to_numpy()) / 365.2425
