"""The 数字邑门式 statistics: aggregate tables the open-data run publishes (issue 12).

Pure functions: the current clean tables in, small pandas-built tables out. Counts come
from the service centre's cases, the enterprise register and the population register.
Small cells cannot re-identify anyone either: a count below the publication k is
suppressed (NULL, with ``suppressed`` true), and when a column would have exactly one
suppressed cell the next smallest is suppressed too, so a published total cannot give it
back (complementary suppression). Shares are computed only from published counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.definitions import Catalog
from catalog.identifiers import JIANGMEN_DIVISIONS, JIANGMEN_RETIRED_DIVISIONS
from catalog.service_items import load_service_items

CASES = "xingzheng.service_case"
ENTERPRISES = "gongshang.enterprise_registration"
POPULATION = "gongan.population"

PROCESSING_BANDS = [  # (label, upper bound in days, exclusive)
    ("1天内", 1),
    ("1-3天", 3),
    ("3-7天", 7),
    ("7-15天", 15),
    ("15-30天", 30),
    ("30天以上", np.inf),
]
AGE_BAND_WIDTH, AGE_TOP = 5, 85  # 0-4 … 80-84, 85+

# The clean columns each source's statistics read (publishing reads no others for them)
CASE_COLUMNS = [
    "applicant_type",
    "department",
    "item_name",
    "district_code",
    "channel",
    "accepted_at",
    "completed_at",
    "satisfaction",
    "status",
]
STAT_COLUMNS = {
    CASES: CASE_COLUMNS,
    ENTERPRISES: ["division_code", "ent_type", "status"],
    POPULATION: ["division_code", "sex", "birth_date", "status"],
}


def statistics_signature_parts(catalog: Catalog, source: str, ds: date) -> list:
    """What a source's statistics depend on besides its clean rows (decision 0016): the
    publication k, the night itself where a figure is as of that date (ages on ``ds``,
    cases still open at its end), and the service items' time limits."""
    parts: list = [source, catalog.dataset(source).public.k]
    if source in (CASES, POPULATION):
        parts.append(ds.isoformat())
    if source == CASES:
        parts.append([i.model_dump() for i in load_service_items()])
    return parts


@dataclass
class StatTable:
    """One published statistics table and what the catalogue says about it."""

    name: str
    title: str
    title_en: str
    description: str
    description_en: str
    frame: pd.DataFrame
    sources: list[str]
    columns: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (zh, en)

    @property
    def table(self) -> pa.Table:
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        schema = pa.schema(
            f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f
            for f in table.schema
        ).remove_metadata()
        return table.cast(schema)

    def describe(self) -> dict:
        """What the partition manifest records for the DCAT catalogue and the portal."""
        return {
            "kind": "statistics",
            "title": self.title,
            "title_en": self.title_en,
            "description": self.description,
            "description_en": self.description_en,
            "columns": {k: list(v) for k, v in self.columns.items()},
            "sources": self.sources,
        }


def suppressed_small_cells(frame: pd.DataFrame, count: str, k: int) -> pd.DataFrame:
    """Counts below ``k`` (and one complementary cell) set to NULL, flagged ``suppressed``."""
    out = frame.copy()
    values = out[count].astype("Int64")
    small = (values > 0) & (values < k)
    if small.sum() == 1:
        rest = values.where(~small & (values > 0))
        if rest.notna().any():
            small.loc[rest.idxmin()] = True
    out[count] = values.mask(small)
    out["suppressed"] = small.to_numpy()
    return out


def _share(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator.astype("Float64") / denominator.astype("Float64")).round(4)


def _district_name(codes: pd.Series) -> pd.Series:
    names = {**JIANGMEN_DIVISIONS, **JIANGMEN_RETIRED_DIVISIONS}
    return codes.astype("string").str.slice(0, 6).map(names).fillna("其他").astype("string")


def _counted(frame: pd.DataFrame, by: list[str], name: str = "cases") -> pd.DataFrame:
    return (
        frame.groupby(by, dropna=False, observed=True, sort=True).size().rename(name).reset_index()
    )


# --------------------------------------------------------------------------- cases


def case_frame(cases: pa.Table) -> pd.DataFrame:
    """The columns of the clean service cases the statistics read."""
    frame = cases.select(CASE_COLUMNS).to_pandas()
    for column in ("accepted_at", "completed_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def processing_days(frame: pd.DataFrame) -> pd.Series:
    """Days from acceptance to completion of completed cases (NaN otherwise)."""
    done = frame["status"].eq("办结") & frame["completed_at"].notna()
    days = (frame["completed_at"] - frame["accepted_at"]).dt.total_seconds() / 86400
    return days.where(done)


def month_labels(stamps: pd.Series) -> pd.Series:
    """``stamps.dt.strftime("%Y-%m")`` (NULL for NaT), each distinct month formatted once
    instead of every case's stamp (strftime per row was a quarter of the case statistics)."""
    months = stamps.to_numpy().astype("datetime64[M]")
    codes, distinct = pd.factorize(months.view(np.int64))
    firsts = pd.Series(distinct.view("datetime64[M]").astype("datetime64[us]"))
    return firsts.dt.strftime("%Y-%m").take(codes).set_axis(stamps.index)


def processing_band(days: pd.Series) -> pd.Series:
    labels = [label for label, _ in PROCESSING_BANDS]
    edges = [-np.inf] + [bound for _, bound in PROCESSING_BANDS]
    return pd.cut(days, edges, labels=labels, right=False)


def case_tables(frame: pd.DataFrame, ds: date, k: int) -> list[StatTable]:
    """Cases by district, department, item, month and applicant type; processing-time bands;
    online and zero-visit shares; overdue against statutory and promised limits;
    satisfaction."""
    completed = frame["status"].eq("办结")
    src = [CASES]
    tables = []

    by_district = _counted(frame, ["district_code"])
    by_district.insert(1, "district_name", _district_name(by_district["district_code"]))
    tables.append(
        StatTable(
            "cases_by_district",
            "办件量 (按区县)",
            "Service cases by district",
            "行政服务中心受理的办件数, 按受理地行政区划。",
            "Cases accepted by the service centre, by district of acceptance.",
            suppressed_small_cells(by_district, "cases", k),
            src,
            {
                "district_code": ("区划代码", "division code"),
                "district_name": ("区县", "district"),
                "cases": ("办件数", "cases"),
            },
        )
    )
    by_department = _counted(frame, ["department"])
    tables.append(
        StatTable(
            "cases_by_department",
            "办件量 (按部门)",
            "Service cases by department",
            "各受理部门的办件数。",
            "Cases by the department that handled them.",
            suppressed_small_cells(by_department, "cases", k),
            src,
            {"department": ("受理部门", "department"), "cases": ("办件数", "cases")},
        )
    )
    by_item = _counted(frame, ["department", "item_name"])
    tables.append(
        StatTable(
            "cases_by_item",
            "办件量 (按事项)",
            "Service cases by item",
            "各事项的办件数。",
            "Cases by service item.",
            suppressed_small_cells(by_item, "cases", k),
            src,
            {
                "department": ("受理部门", "department"),
                "item_name": ("事项名称", "service item"),
                "cases": ("办件数", "cases"),
            },
        )
    )
    month = month_labels(frame["accepted_at"]).rename("month")
    by_month = _counted(frame.assign(month=month), ["month"])
    tables.append(
        StatTable(
            "cases_by_month",
            "办件量 (按月份)",
            "Service cases by month",
            "每月受理的办件数。",
            "Cases accepted per month.",
            suppressed_small_cells(by_month, "cases", k),
            src,
            {"month": ("受理月份", "month accepted"), "cases": ("办件数", "cases")},
        )
    )
    by_type = _counted(frame, ["applicant_type"])
    tables.append(
        StatTable(
            "cases_by_applicant_type",
            "办件量 (自然人与法人)",
            "Service cases: natural and legal persons",
            "自然人与法人申请的办件数。",
            "Cases applied for by natural persons and by legal persons.",
            suppressed_small_cells(by_type, "cases", k),
            src,
            {"applicant_type": ("申请人类型", "applicant type"), "cases": ("办件数", "cases")},
        )
    )
    bands = processing_band(processing_days(frame))
    by_band = (
        bands.value_counts(sort=False)
        .rename_axis("band")
        .rename("cases")
        .reset_index()
        .astype({"band": "string"})
    )
    by_band = by_band[by_band["cases"] > 0].reset_index(drop=True)
    tables.append(
        StatTable(
            "processing_time_bands",
            "办结用时分布",
            "Processing time of completed cases",
            "已办结办件从受理到办结的用时 (自然日)。",
            "Completed cases by time from acceptance to completion (calendar days).",
            suppressed_small_cells(by_band, "cases", k),
            src,
            {"band": ("用时区间", "time band"), "cases": ("办件数", "cases")},
        )
    )
    online = frame["channel"].eq("网上")
    measures = pd.DataFrame(
        {
            "measure": ["网上办结", "零跑动"],
            "measure_en": ["completed online", "zero visits"],
            "cases": [int((completed & online).sum()), int(online.sum())],
            "of_cases": [int(completed.sum()), len(frame)],
        }
    )
    measures = suppressed_small_cells(measures, "cases", k)
    measures["share"] = _share(measures["cases"], measures["of_cases"])
    tables.append(
        StatTable(
            "online_service",
            "网上办理与零跑动",
            "Online completion and zero-visit cases",
            "网上办结: 已办结办件中网上受理的占比; "
            "零跑动: 网上受理 (无需到窗口或自助终端) 的办件占全部办件的比例。",
            "Completed online: share of completed cases accepted online; zero visits: share of "
            "all cases accepted online (no visit to a window or a self-service terminal).",
            measures,
            src,
            {
                "measure": ("指标", "measure"),
                "measure_en": ("指标 (英文)", "measure (English)"),
                "cases": ("办件数", "cases"),
                "of_cases": ("基数", "out of"),
                "share": ("占比", "share"),
            },
        )
    )
    tables.append(_overdue(frame, ds, k))
    rated = frame[frame["satisfaction"].notna()]
    by_rating = _counted(rated, ["satisfaction"])
    order = {"非常满意": 0, "满意": 1, "基本满意": 2, "不满意": 3}
    by_rating = by_rating.sort_values("satisfaction", key=lambda s: s.map(order)).reset_index(
        drop=True
    )
    by_rating = suppressed_small_cells(by_rating, "cases", k)
    by_rating["share"] = _share(by_rating["cases"], pd.Series(len(rated), index=by_rating.index))
    tables.append(
        StatTable(
            "satisfaction",
            "满意度评价",
            "Satisfaction ratings",
            "已评价办件的满意度分布。",
            "Rated cases by satisfaction.",
            by_rating,
            src,
            {
                "satisfaction": ("满意度", "rating"),
                "cases": ("办件数", "cases"),
                "share": ("占比", "share"),
            },
        )
    )
    return tables


def overdue_flags(frame: pd.DataFrame, ds: date) -> pd.DataFrame:
    """Per case (completed or still open; returned cases are not counted): days taken so
    far, and whether that passes the item's statutory and promised limits. Items without a
    known limit are left out."""
    limits = pd.DataFrame([i.model_dump() for i in load_service_items()]).rename(
        columns={"item": "item_name"}
    )
    end_of_day = pd.Timestamp(datetime.combine(ds + timedelta(days=1), time()))
    open_or_done = frame[frame["status"].isin(["办结", "受理"])]
    until = open_or_done["completed_at"].where(
        open_or_done["status"].eq("办结") & open_or_done["completed_at"].notna(), end_of_day
    )
    days = (until - open_or_done["accepted_at"]).dt.total_seconds() / 86400
    checked = open_or_done.assign(days=days).merge(limits, on=["department", "item_name"])
    checked["over_statutory"] = checked["days"] > checked["statutory_days"]
    checked["over_promised"] = checked["days"] > checked["promised_days"]
    return checked


def _overdue(frame: pd.DataFrame, ds: date, k: int) -> StatTable:
    checked = overdue_flags(frame, ds)
    rows = []
    for kind, kind_en, flag in (
        ("法定时限", "statutory limit", "over_statutory"),
        ("承诺时限", "promised limit", "over_promised"),
    ):
        per = checked.groupby("department", sort=True).agg(
            cases=("days", "size"), overdue=(flag, "sum")
        )
        per = per.reset_index().assign(limit=kind, limit_en=kind_en)
        rows.append(per)
    table = pd.concat(rows, ignore_index=True)[
        ["department", "limit", "limit_en", "cases", "overdue"]
    ]
    table = suppressed_small_cells(table, "overdue", k)
    table["share"] = _share(table["overdue"], table["cases"])
    return StatTable(
        "overdue_cases",
        "超期办件 (法定与承诺时限)",
        "Overdue cases against statutory and promised limits",
        "各部门已办结及在办办件中超过法定办结时限与承诺办结时限的件数 (自然日, 事项清单)。",
        "Completed and open cases past the statutory and the promised time limit of their "
        "item (calendar days, from the centre's item list), by department.",
        table,
        [CASES],
        {
            "department": ("受理部门", "department"),
            "limit": ("时限", "limit"),
            "limit_en": ("时限 (英文)", "limit (English)"),
            "cases": ("办件数", "cases"),
            "overdue": ("超期件数", "overdue"),
            "share": ("超期率", "overdue share"),
        },
    )


# --------------------------------------------------------------------------- registers


def enterprise_table(enterprises: pa.Table, k: int) -> StatTable:
    frame = enterprises.select(STAT_COLUMNS[ENTERPRISES]).to_pandas()
    counted = _counted(frame, ["division_code", "ent_type", "status"], "enterprises")
    counted.insert(1, "district_name", _district_name(counted["division_code"]))
    return StatTable(
        "enterprises_by_district_type_status",
        "市场主体数量 (按区县、类型、状态)",
        "Enterprises by district, type and status",
        "企业登记中的市场主体数, 按登记机关区划、企业类型和登记状态。",
        "Registered enterprises by registering district, type and status.",
        suppressed_small_cells(counted, "enterprises", k),
        [ENTERPRISES],
        {
            "division_code": ("区划代码", "division code"),
            "district_name": ("区县", "district"),
            "ent_type": ("企业类型", "enterprise type"),
            "status": ("登记状态", "status"),
            "enterprises": ("市场主体数", "enterprises"),
        },
    )


def age_band(birth_dates: pd.Series, ds: date) -> pd.Series:
    """Age on ``ds`` in 5-year bands ``0-4`` … ``80-84``, ``85+`` (NULL when unknown)."""
    born = pd.to_datetime(birth_dates)
    had_birthday = (born.dt.month < ds.month) | (
        (born.dt.month == ds.month) & (born.dt.day <= ds.day)
    )
    age = ds.year - born.dt.year - (~had_birthday).astype(int)
    low = (age.clip(upper=AGE_TOP) // AGE_BAND_WIDTH) * AGE_BAND_WIDTH
    # a label per band, then looked up: building the text of millions of rows costs seconds
    labels = {
        v: f"{AGE_TOP}+" if v >= AGE_TOP else f"{int(v)}-{int(v) + AGE_BAND_WIDTH - 1}"
        for v in low.dropna().unique()
    }
    return low.map(labels).astype("string")  # no birth date: NULL


def population_table(population: pa.Table, ds: date, k: int) -> StatTable:
    # residents counted per district, sex and birth date in Arrow first: the age bands are
    # then computed once per birth date and district, not once per resident (3 million)
    normal = population.select(STAT_COLUMNS[POPULATION]).filter(
        pc.equal(population.column("status"), "正常")
    )
    born = normal.group_by(["division_code", "sex", "birth_date"], use_threads=False).aggregate(
        [([], "count_all")]
    )
    # dates as datetime64, not one Python date object per group
    frame = born.to_pandas(date_as_object=False)
    frame = frame.assign(age_band=age_band(frame["birth_date"], ds))
    counted = (
        frame.groupby(["division_code", "sex", "age_band"], dropna=False, observed=True, sort=True)[
            "count_all"
        ]
        .sum()
        .rename("persons")
        .reset_index()
    )
    counted.insert(1, "district_name", _district_name(counted["division_code"]))
    return StatTable(
        "population_by_district_sex_age",
        "户籍人口 (按区县、性别、年龄组)",
        "Registered population by district, sex and age band",
        f"户籍状态为正常的人口, 按户籍地区划、性别和 {ds} 时的五岁年龄组。",
        f"Registered residents (status normal) by district, sex and 5-year age band on {ds}.",
        suppressed_small_cells(counted, "persons", k),
        [POPULATION],
        {
            "division_code": ("区划代码", "division code"),
            "district_name": ("区县", "district"),
            "sex": ("性别", "sex"),
            "age_band": ("年龄组", "age band"),
            "persons": ("人数", "persons"),
        },
    )


def statistics_tables(catalog: Catalog, clean: Mapping[str, pa.Table], ds: date) -> list[StatTable]:
    """Every statistics table whose source dataset is open-able and present in ``clean``.

    Small cells are suppressed at the strictest k of the sources' public settings.
    """
    tables: list[StatTable] = []
    if CASES in clean:
        tables += case_tables(case_frame(clean[CASES]), ds, catalog.dataset(CASES).public.k)
    if ENTERPRISES in clean:
        tables.append(enterprise_table(clean[ENTERPRISES], catalog.dataset(ENTERPRISES).public.k))
    if POPULATION in clean:
        tables.append(population_table(clean[POPULATION], ds, catalog.dataset(POPULATION).public.k))
    for table in tables:
        table.columns["suppressed"] = ("小数压制", "small cell suppressed")
    return tables
