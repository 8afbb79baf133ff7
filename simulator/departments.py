"""Each department's view of the true world: which entities it holds and how it records them.

A :class:`Plan` per dataset says how to pick its entities, how to render a batch of them
as clean rows (columns named exactly as in the catalog), which columns dirt may touch and
what a daily update changes. Rendering is whole-column numpy; nothing loops over rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cached_property

import numpy as np
import pandas as pd

from catalog.identifiers import make_org_codes
from simulator import enterprises as ent
from simulator import population as pop
from simulator import vocab
from simulator.dirt import DirtTargets
from simulator.fmt import day_number, iso_dates, iso_datetimes, office_seconds, updated_seconds
from simulator.rates import DirtRates
from simulator.world import ENTERPRISE_BASE, World, adults, text

Columns = dict[str, np.ndarray]
Tags = dict[str, np.ndarray]
CASES_SINCE = day_number(date(2016, 1, 1))
SYSTEM_SINCE = day_number(date(2005, 1, 1))  # when the current systems went live
YEAR = 365.2425


@dataclass
class Context:
    """What a plan needs to render rows: the world, the date, the dirt rates."""

    world: World
    as_of: date
    rates: DirtRates
    fresh: bool = False  # rows created today (daily inserts): all timestamps on as_of

    @property
    def today(self) -> int:
        return day_number(self.as_of)

    @cached_property
    def live_companies(self) -> np.ndarray:
        """Enterprise rows that are companies still in business (employers)."""
        e = self.world.enterprises
        return np.flatnonzero(
            (e["ent_type"].to_numpy() != vocab.ENT_INDIVIDUAL) & (e["status"].to_numpy() == 0)
        )

    def updated_at(self, start_days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.fresh:
            return iso_datetimes(office_seconds(np.full(len(start_days), self.today), rng))
        return iso_datetimes(updated_seconds(start_days, self.today, rng))


@dataclass(frozen=True)
class Plan:
    id: str
    full_rows: int
    key: str
    key_prefix: str | None  # internal running number; None when the key is an identifier
    targets: DirtTargets
    draw: Callable[[Context, int, np.random.Generator], np.ndarray]  # entity codes
    make: Callable[[Context, np.ndarray, np.random.Generator, bool], tuple[Columns, Tags]]
    update: Callable[[Context, int, np.random.Generator], Columns]
    delete: tuple[str, str] | None = None  # SQL status flag; file drops hard-delete
    can_duplicate: Callable[[Context, np.ndarray], np.ndarray] | None = None
    pending_filter: str | None = None  # SQL WHERE picking rows a daily update may touch


def _nullable(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    out = np.asarray(values).astype(object)
    out[missing] = None
    return out


def _person_identity(p: pd.DataFrame) -> Columns:
    """The columns every person register shares: ID, name, sex, birth date."""
    return {
        "id_no": text(p, "id_no"),
        "name": pop.names(p),
        "sex": pop.sexes(p),
        "birth_date": pop.birth_dates(p),
    }


def _money(amount: np.ndarray) -> np.ndarray:
    cents = np.round(np.asarray(amount) * 100).astype(np.int64)
    if cents.size == 0:  # np.strings.zfill cannot size an empty array
        return np.array([], dtype="U16")
    return np.strings.add(
        np.strings.add((cents // 100).astype("U12"), "."),
        np.strings.zfill((cents % 100).astype("U2"), 2),
    )


def _hash_unit(codes: np.ndarray, salt: int) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per entity: same answer in every batch."""
    x = (np.asarray(codes, dtype=np.uint64) + np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _without_replacement(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(pool)[: min(n, len(pool))]


def _persons(ctx: Context, idx: np.ndarray) -> pd.DataFrame:
    return ctx.world.persons.iloc[idx]


def _ents(ctx: Context, codes: np.ndarray) -> pd.DataFrame:
    return ctx.world.enterprises.iloc[np.asarray(codes) - ENTERPRISE_BASE]


def _enterprise_codes(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64) + ENTERPRISE_BASE


# --- 公安 population ---------------------------------------------------------------------


def _gongan_make(
    ctx: Context, idx: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[Columns, Tags]:
    p = _persons(ctx, idx)
    n = len(idx)
    birth = p["birth_day"].to_numpy()
    return {
        **_person_identity(p),
        "ethnicity": vocab.ETHNICITIES[p["ethnicity"].to_numpy()],
        "division_code": np.array(vocab.DISTRICT_CODES)[p["district"].to_numpy()],
        "address": pop.addresses(p),
        "household_type": np.array(["城镇", "农村"])[p["household"].to_numpy()],
        "status": np.where((rng.random(n) < 0.01) & ~ctx.fresh, "注销", "正常"),
        "updated_at": ctx.updated_at(np.maximum(birth, SYSTEM_SINCE), rng),
    }, {}


def _moved_address(ctx: Context, n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pop.draw_persons(n, rng, ctx.as_of)


def _gongan_update(ctx: Context, n: int, rng: np.random.Generator) -> Columns:
    moved = _moved_address(ctx, n, rng)  # the resident moved within Jiangmen
    return {
        "address": pop.addresses(moved),
        "division_code": np.array(vocab.DISTRICT_CODES)[moved["district"].to_numpy()],
    }


# --- 人社 insured persons ----------------------------------------------------------------

INSURANCE = np.array(["职工养老", "城乡居民养老", "职工医疗", "失业", "工伤"])
INSURANCE_P = [0.6, 0.08, 0.2, 0.07, 0.05]
INSURED_STATUS = np.array(["参保缴费", "暂停缴费", "终止"])


def _renshe_make(
    ctx: Context, idx: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[Columns, Tags]:
    p = _persons(ctx, idx)
    n = len(idx)
    firms = ctx.world.enterprises
    employer = rng.choice(ctx.live_companies, n)
    kind = rng.choice(len(INSURANCE), n, p=INSURANCE_P)
    resident = kind == 1
    earliest = np.maximum.reduce(
        [
            p["birth_day"].to_numpy() + int(18 * YEAR),
            firms["established"].to_numpy()[employer],
            np.full(n, day_number(date(1995, 1, 1))),
        ]
    )
    start = earliest + (rng.random(n) * np.maximum(ctx.today - earliest, 0)).astype(np.int64)
    start = np.minimum(start, ctx.today)
    return {
        **_person_identity(p),
        "phone": pop.phones(p),
        "employer_name": _nullable(text(firms, "name")[employer], resident),
        "employer_uscc": _nullable(text(firms, "uscc")[employer], resident),
        "insurance_type": INSURANCE[kind],
        "start_date": iso_dates(start),
        "monthly_base": _money(np.exp(rng.normal(np.log(4500), 0.45, n))),
        "status": INSURED_STATUS[rng.choice(3, n, p=[0.88, 0.08, 0.04])],
        "updated_at": ctx.updated_at(start, rng),
    }, {}


def _renshe_update(ctx: Context, n: int, rng: np.random.Generator) -> Columns:
    return {
        "monthly_base": _money(np.exp(rng.normal(np.log(4800), 0.45, n))),
        "status": INSURED_STATUS[rng.choice(3, n, p=[0.7, 0.2, 0.1])],
    }


# --- 卫计 health records -----------------------------------------------------------------


def _weiji_make(
    ctx: Context, idx: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[Columns, Tags]:
    p = _persons(ctx, idx)
    n = len(idx)
    age = pop.ages(p, ctx.as_of)
    town = p["town"].to_numpy()
    clinic = np.strings.add(
        vocab.TOWN_NAMES[town], np.where(vocab.TOWN_IS_STREET[town], "社区卫生服务中心", "卫生院")
    )
    chronic_p = np.where(age >= 60, 0.45, np.where(age >= 40, 0.2, 0.03))
    count = (rng.random(n) < chronic_p).astype(int) + (rng.random(n) < chronic_p / 3)
    first = vocab.CHRONIC[rng.choice(len(vocab.CHRONIC), n, p=vocab.CHRONIC_WEIGHTS)]
    second = vocab.CHRONIC[rng.choice(len(vocab.CHRONIC), n, p=vocab.CHRONIC_WEIGHTS)]
    both = np.where(second != first, np.strings.add(np.strings.add(first, ";"), second), first)
    chronic = _nullable(np.where(count >= 2, both, first), count == 0)
    visit = ctx.today - (rng.random(n) * 730).astype(np.int64)
    visited = rng.random(n) < 0.7
    return {
        **_person_identity(p),
        "phone": pop.phones(p),
        "address": pop.addresses(p, with_province=False),
        "blood_type": vocab.BLOOD_TYPES[rng.choice(5, n, p=vocab.BLOOD_WEIGHTS)],
        "chronic_conditions": chronic,
        "clinic": clinic,
        "last_visit_date": _nullable(iso_dates(visit), ~visited),
        "updated_at": ctx.updated_at(np.where(visited, visit, ctx.today - 1500), rng),
    }, {}


def _weiji_update(ctx: Context, n: int, rng: np.random.Generator) -> Columns:
    return {"last_visit_date": np.full(n, ctx.as_of.isoformat())}


# --- 工商 enterprise registration -----------------------------------------------------


def _gongshang_make(
    ctx: Context, codes: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[Columns, Tags]:
    e = _ents(ctx, codes)
    rep = _persons(ctx, e["legal_rep"].to_numpy())
    established = e["established"].to_numpy()
    pre = established < ent.REFORM_DAY
    # firms closed before 多证合一 never received a USCC
    never_converted = pre & (e["status"].to_numpy() != 0) & (_hash_unit(codes, 3) < 0.5)
    reg_no = text(e, "reg_no")
    return {
        "uscc": _nullable(text(e, "uscc"), never_converted),
        "reg_no": _nullable(reg_no, reg_no == ""),
        "name": text(e, "name"),
        "ent_type": vocab.ENT_TYPES[e["ent_type"].to_numpy()],
        "legal_rep_name": pop.names(rep),
        "legal_rep_id_no": text(rep, "id_no"),
        "registered_capital": _money(e["capital"].to_numpy()),
        "established_date": iso_dates(established),
        "division_code": text(e, "division"),
        "address": ent.addresses(e),
        "status": ent.status_names(e),
        "updated_at": ctx.updated_at(np.maximum(established, SYSTEM_SINCE), rng),
    }, {}


def _gongshang_update(ctx: Context, n: int, rng: np.random.Generator) -> Columns:
    moved = ent.draw_enterprises(n, rng, ctx.as_of, np.arange(1))
    return {
        "address": ent.addresses(moved),
        "registered_capital": _money(moved["capital"].to_numpy()),
    }


# --- 质监 organisation codes --------------------------------------------------------------


def _zhijian_make(
    ctx: Context, codes: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[Columns, Tags]:
    e = _ents(ctx, codes)
    n = len(codes)
    rep = _persons(ctx, e["legal_rep"].to_numpy())
    org, stale = _legacy_org_codes(ctx, codes)
    plain = _hash_unit(codes, 5) < ctx.rates.org_code_no_hyphen
    if dup:  # the same certificate keyed in again, the other way round
        plain = ~plain
    hyphen = np.strings.add(
        np.strings.add(np.strings.slice(org, 0, 8), "-"), np.strings.slice(org, 8, 9)
    )
    issued = e["established"].to_numpy() + rng.integers(0, 30, n)
    terms = np.maximum(np.ceil((ctx.today - issued) / (4 * YEAR)), 1)
    individual = e["ent_type"].to_numpy() == vocab.ENT_INDIVIDUAL
    return {
        "org_code": np.where(plain, org, hyphen),
        "name": text(e, "name"),
        "org_type": np.where(individual, "个体工商户", "企业法人"),
        "legal_rep_name": pop.names(rep),
        "address": ent.addresses(e),
        "issued_date": iso_dates(issued),
        "valid_until": iso_dates(issued + (terms * 4 * YEAR).astype(np.int64)),
        "updated_at": ctx.updated_at(np.maximum(issued, SYSTEM_SINCE), rng),
    }, {"org_code_no_hyphen": plain, "stale_org_code": stale}


def _legacy_org_codes(ctx: Context, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The organisation code a legacy record carries, and whether it is a stale one.

    Some firms were given a new organisation code when their USCC was issued; their
    certificates and old tax numbers still carry the code issued before, which is in no
    USCC. Stale bodies start with 0 (drawn codes are 10000000 and up), so they never
    collide with a firm's real code.
    """
    e = _ents(ctx, codes)
    pre = e["established"].to_numpy() < ent.REFORM_DAY
    stale = pre & (_hash_unit(codes, 17) < ctx.rates.stale_org_code)
    org = text(e, "org_code")
    if stale.any():
        index = np.asarray(codes, dtype=np.int64)[stale] - ENTERPRISE_BASE
        org[stale] = make_org_codes(np.char.zfill(index.astype("U8"), 8))
    return org, stale


def _zhijian_update(ctx: Context, n: int, rng: np.random.Generator) -> Columns:
    return {"valid_until": np.full(n, (ctx.as_of.replace(year=ctx.as_of.year + 4)).isoformat())}


# --- 国税 / 地税 taxpayers ----------------------------------------------------------------

TAX_STATUS = np.array(["正常", "注销", "非正常"])  # by enterprise status 存续/注销/吊销


def _tax_numbers(
    ctx: Context, codes: np.ndarray, dup: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tax number per docs/architecture.md §4, whether it is a legacy 15-character number,
    and whether that number carries a stale organisation code."""
    e = _ents(ctx, codes)
    individual = e["ent_type"].to_numpy() == vocab.ENT_INDIVIDUAL
    pre = e["established"].to_numpy() < ent.REFORM_DAY
    owner_id = text(_persons(ctx, e["legal_rep"].to_numpy()), "id_no")
    owner_no = np.strings.add(owner_id, np.strings.zfill(e["owner_seq"].to_numpy().astype("U2"), 2))
    uscc = text(e, "uscc")
    org, stale = _legacy_org_codes(ctx, codes)
    old = np.strings.add(text(e, "division"), org)
    legacy = pre & ~individual & (_hash_unit(codes, 11) < ctx.rates.legacy_tax_no)
    if dup:  # the firm registered a second time under its other number
        alternate_is_old = ~individual & ~legacy
        return np.where(alternate_is_old, old, uscc), alternate_is_old, alternate_is_old & stale
    return np.where(individual, owner_no, np.where(legacy, old, uscc)), legacy, legacy & stale


def _tax_can_duplicate(ctx: Context, codes: np.ndarray) -> np.ndarray:
    e = _ents(ctx, codes)
    return (e["established"].to_numpy() < ent.REFORM_DAY) | (
        e["ent_type"].to_numpy() == vocab.ENT_INDIVIDUAL
    )


def _tax_common(
    ctx: Context, codes: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[pd.DataFrame, Columns, Tags, np.ndarray]:
    e = _ents(ctx, codes)
    tax_no, legacy, stale = _tax_numbers(ctx, codes, dup)
    registered = np.minimum(
        e["established"].to_numpy() + rng.integers(3, 60, len(codes)), ctx.today
    )
    status = TAX_STATUS[e["status"].to_numpy()]
    status[(status == "正常") & (rng.random(len(codes)) < 0.04)] = "非正常"
    cols = {
        "tax_no": tax_no,
        "taxpayer_name": text(e, "name"),
        "legal_rep_name": pop.names(_persons(ctx, e["legal_rep"].to_numpy())),
        "registered_date": iso_dates(registered),
        "status": status,
    }
    return e, cols, {"legacy_tax_no": legacy, "stale_org_code": stale}, registered


_CITY_PREFIX = ent.CITY_PREFIX


def _guoshui_make(
    ctx: Context, codes: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[Columns, Tags]:
    e, cols, tags, registered = _tax_common(ctx, codes, rng, dup)
    general = (e["ent_type"].to_numpy() != vocab.ENT_INDIVIDUAL) & (rng.random(len(codes)) < 0.3)
    cols |= {
        "taxpayer_type": np.where(general, "一般纳税人", "小规模纳税人"),
        "tax_authority": np.strings.add(_CITY_PREFIX[e["district"].to_numpy()], "国家税务局"),
        "updated_at": ctx.updated_at(np.maximum(registered, SYSTEM_SINCE), rng),
    }
    return cols, tags


def _dishui_make(
    ctx: Context, codes: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[Columns, Tags]:
    e, cols, tags, registered = _tax_common(ctx, codes, rng, dup)
    cols |= {
        "phone": pop.phones(_persons(ctx, e["legal_rep"].to_numpy())),
        "industry": vocab.INDUSTRY_SECTORS[e["industry"].to_numpy()],
        "updated_at": ctx.updated_at(np.maximum(registered, SYSTEM_SINCE), rng),
    }
    return cols, tags


def _guoshui_update(ctx: Context, n: int, rng: np.random.Generator) -> Columns:
    return {
        "taxpayer_type": np.where(rng.random(n) < 0.5, "一般纳税人", "小规模纳税人"),
        "status": np.where(rng.random(n) < 0.7, "正常", "非正常"),
    }


def _dishui_update(ctx: Context, n: int, rng: np.random.Generator) -> Columns:
    return {
        "phone": pop.phones(pop.draw_persons(n, rng, date(1990, 1, 1))),
        "status": np.where(rng.random(n) < 0.7, "正常", "非正常"),
    }


# --- 行政服务中心 service cases --------------------------------------------------------

PERSON_SHARE = 404_588 / 441_326


def _xingzheng_draw(ctx: Context, n: int, rng: np.random.Generator) -> np.ndarray:
    """Applicants: 91.68% natural persons (16+), the rest firms still in business."""
    n_person = round(n * PERSON_SHARE)
    persons = rng.choice(adults(ctx.world.persons, ctx.as_of, 16, 100), n_person)
    live = np.flatnonzero(ctx.world.enterprises["status"].to_numpy() == 0)
    firms = _enterprise_codes(rng.choice(live, n - n_person))
    return rng.permutation(np.concatenate([persons, firms]))


def _xingzheng_make(
    ctx: Context, codes: np.ndarray, rng: np.random.Generator, dup: bool
) -> tuple[Columns, Tags]:
    n = len(codes)
    person = codes < ENTERPRISE_BASE
    p = _persons(ctx, codes[person])
    e = _ents(ctx, codes[~person])
    rep = _persons(ctx, e["legal_rep"].to_numpy())

    def mix(for_person: np.ndarray, for_firm: np.ndarray) -> np.ndarray:
        out = np.empty(n, dtype=object)
        out[person], out[~person] = for_person, for_firm
        return out

    person_items = np.array(vocab.PERSON_ITEMS)
    firm_items = np.array(vocab.ENTERPRISE_ITEMS)
    item = np.empty((n, 2), dtype=object)
    item[person] = person_items[rng.integers(0, len(person_items), len(p))]
    item[~person] = firm_items[rng.integers(0, len(firm_items), len(e))]
    if ctx.fresh:
        day = np.full(n, ctx.today, dtype=np.int64)
    else:
        day = CASES_SINCE + (rng.random(n) * (ctx.today - CASES_SINCE + 1)).astype(np.int64)
        dow = (day + 3) % 7  # 0 = Monday
        day = np.where(dow == 5, day - 1, np.where(dow == 6, day + 1, day))
        day = np.where(day > ctx.today, day - 3, day)
    accepted = office_seconds(day, rng)
    completed = (
        accepted
        + (rng.gamma(1.5, 2.0, n) * 86400).astype(np.int64)
        + rng.integers(600, 4 * 3600, n)
    )
    pending = (completed > ctx.today * 86400 + 86399) | ctx.fresh
    returned = ~pending & (rng.random(n) < 0.02)
    rated = ~pending & ~returned & (rng.random(n) < 0.85)
    satisfaction = vocab.SATISFACTION[rng.choice(4, n, p=vocab.SATISFACTION_WEIGHTS)]
    return {
        "applicant_type": np.where(person, "自然人", "法人"),
        "applicant_name": mix(pop.names(p), text(e, "name")),
        "applicant_id_no": mix(text(p, "id_no"), text(e, "uscc")),
        "applicant_birth_date": mix(pop.birth_dates(p), None),
        "phone": mix(pop.phones(p), pop.phones(rep)),
        "department": item[:, 0],
        "item_name": item[:, 1],
        "district_code": mix(
            np.array(vocab.DISTRICT_CODES)[p["district"].to_numpy()], text(e, "division")
        ),
        "channel": vocab.CHANNELS[rng.choice(3, n, p=vocab.CHANNEL_WEIGHTS)],
        "accepted_at": iso_datetimes(accepted),
        "completed_at": _nullable(iso_datetimes(completed), pending),
        "satisfaction": _nullable(satisfaction, ~rated),
        "status": np.where(pending, "受理", np.where(returned, "退回", "办结")),
        "updated_at": iso_datetimes(np.where(pending, accepted, completed)),
    }, {}


def _xingzheng_update(ctx: Context, n: int, rng: np.random.Generator) -> Columns:
    """Daily update of a case: it is completed today."""
    done = office_seconds(np.full(n, ctx.today), rng)
    return {
        "completed_at": iso_datetimes(done),
        "status": np.full(n, "办结"),
        "satisfaction": vocab.SATISFACTION[rng.choice(4, n, p=vocab.SATISFACTION_WEIGHTS)],
    }


# --- the plans ----------------------------------------------------------------------------


def _all_persons(ctx: Context, n: int, rng: np.random.Generator) -> np.ndarray:
    return _without_replacement(np.arange(len(ctx.world.persons)), n, rng)


def _working_age(ctx: Context, n: int, rng: np.random.Generator) -> np.ndarray:
    return _without_replacement(adults(ctx.world.persons, ctx.as_of, 18, 65), n, rng)


def _all_firms(ctx: Context, n: int, rng: np.random.Generator) -> np.ndarray:
    return _enterprise_codes(_without_replacement(np.arange(len(ctx.world.enterprises)), n, rng))


def _pre_reform_firms(ctx: Context, n: int, rng: np.random.Generator) -> np.ndarray:
    pre = np.flatnonzero(ctx.world.enterprises["established"].to_numpy() < ent.REFORM_DAY)
    return _enterprise_codes(_without_replacement(pre, n, rng))


_ID_DIRT = {"code": "id_no", "person_id": "id_no", "person_name": "name"}
_TAX_DIRT = {"code": "tax_no", "ent_name": "taxpayer_name", "dates": ("registered_date",)}

PLANS: dict[str, Plan] = {
    p.id: p
    for p in [
        Plan(
            "gongan.population",
            3_000_000,
            "person_no",
            "RK",
            DirtTargets(**_ID_DIRT, dates=("birth_date",)),
            _all_persons,
            _gongan_make,
            _gongan_update,
            delete=("status", "注销"),
        ),
        Plan(
            "renshe.insured_person",
            2_000_000,
            "insured_no",
            "SB",
            DirtTargets(
                **_ID_DIRT,
                no_id=True,
                phone="phone",
                ent_name="employer_name",
                dates=("birth_date", "start_date"),
                zero_width=False,
                birth_date="birth_date",
            ),
            _working_age,
            _renshe_make,
            _renshe_update,
        ),
        Plan(
            "weiji.health_record",
            1_800_000,
            "record_no",
            "JK",
            DirtTargets(
                **_ID_DIRT,
                no_id=True,
                phone="phone",
                dates=("birth_date", "last_visit_date"),
                birth_date="birth_date",
            ),
            _all_persons,
            _weiji_make,
            _weiji_update,
        ),
        Plan(
            "gongshang.enterprise_registration",
            250_000,
            "reg_id",
            "DJ",
            DirtTargets(
                code="uscc",
                person_id="legal_rep_id_no",
                person_name="legal_rep_name",
                ent_name="name",
                ent_address="address",
                dates=("established_date",),
            ),
            _all_firms,
            _gongshang_make,
            _gongshang_update,
            delete=("status", "注销"),
        ),
        Plan(
            "zhijian.org_code",
            150_000,
            "org_code",
            None,
            DirtTargets(
                code="org_code",
                person_name="legal_rep_name",
                ent_name="name",
                ent_address="address",
                dates=("issued_date", "valid_until"),
            ),
            _pre_reform_firms,
            _zhijian_make,
            _zhijian_update,
        ),
        Plan(
            "guoshui.taxpayer",
            200_000,
            "tax_no",
            None,
            DirtTargets(**_TAX_DIRT, person_name="legal_rep_name"),
            _all_firms,
            _guoshui_make,
            _guoshui_update,
            can_duplicate=_tax_can_duplicate,
        ),
        Plan(
            "dishui.taxpayer",
            200_000,
            "taxpayer_id",
            "DS",
            DirtTargets(**_TAX_DIRT, person_name="legal_rep_name", phone="phone"),
            _all_firms,
            _dishui_make,
            _dishui_update,
            delete=("status", "注销"),
            can_duplicate=_tax_can_duplicate,
        ),
        Plan(
            "xingzheng.service_case",
            441_326,
            "case_no",
            "BJ",
            DirtTargets(
                code="applicant_id_no",
                person_id="applicant_id_no",
                no_id=True,
                person_name="applicant_name",
                ent_name="applicant_name",
                phone="phone",
                dates=("applicant_birth_date",),
                person_rows="applicant_type",
                birth_date="applicant_birth_date",
            ),
            _xingzheng_draw,
            _xingzheng_make,
            _xingzheng_update,
            pending_filter="status = '受理'",
        ),
    ]
}
