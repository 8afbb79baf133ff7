"""Catalog definitions: departments, datasets and fields, loaded from YAML and checked.

The YAML under ``catalog/definitions/`` is the data-resource catalogue (政务信息资源目录)
and the single place a dataset or field is declared. Everything else reads it through
:func:`load_catalog`. A broken definition raises :class:`CatalogError` listing every
problem at once, each with file, dataset and field.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from catalog.errors import CatalogError
from catalog.masking_overrides import MaskingOverride

DEFINITIONS_DIR = Path(__file__).parent / "definitions"

Level = Literal["open", "shared", "conditional", "restricted"]
PiiKind = Literal[
    "id_no", "name", "phone", "address", "birth_date", "amount", "health", "free_text"
]
FieldType = Literal["string", "date", "datetime", "integer", "decimal"]
RuleName = Literal[  # implemented in etl/rules.py FIELD_RULES (a test ties the two)
    "resident_id",
    "uscc",
    "org_code",
    "business_reg_no",
    "tax_no",
    "applicant_id",
    "phone",
    "date",
    "datetime",
    "division_code",
    "enterprise_name",
]
CheckName = Literal[  # implemented in etl/rules.py CROSS_FIELD_RULES (a test ties the two)
    "id_matches_birth_date_and_sex", "not_before", "id_kind_matches_applicant_type"
]
SourceKind = Literal["sql", "csv", "jsonl", "excel"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldDef(_Strict):
    """One column of a dataset, with its openness level and PII kind (docs/architecture.md §6)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: FieldType = "string"
    required: bool = False
    rule: RuleName | None = None
    allowed: list[str] | None = None
    max_length: int = Field(default=200, gt=0)  # longer values are quarantined
    level: Level
    pii: PiiKind | None = None
    quasi_identifier: bool = False
    join_key: bool = False
    description: str = ""
    masking: MaskingOverride | None = None  # replaces the PII-kind default rule (DESIGN §6)

    @model_validator(mode="after")
    def _check_masking(self) -> FieldDef:
        problems = self.masking.problems(self.level, self.type) if self.masking else []
        if problems:
            raise ValueError("; ".join(problems))
        return self


class SourceDef(_Strict):
    """How the lake reaches a department system: always through an Airflow connection id."""

    kind: SourceKind
    connection_id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    load: Literal["incremental", "snapshot"]
    table: str | None = None
    watermark_column: str | None = None
    path: str | None = None
    encoding: str | None = None
    # Excel drops: the data sheet, by name (a notes sheet in front must not be read as data)
    sheet: str | None = None
    # file drops: is a control file (<file>.ctl: row count + SHA-256) part of the contract?
    # Unset means required for file drops (docs/architecture.md §5, decision 0008).
    control_file: Literal["required", "optional"] | None = None

    @model_validator(mode="after")
    def _check_kind_specific(self) -> SourceDef:
        if self.kind == "sql" and not self.table:
            raise ValueError("an sql source needs 'table'")
        if self.kind != "sql" and not self.path:
            raise ValueError(f"a {self.kind} file drop needs 'path'")
        if self.kind == "csv" and not self.encoding:
            raise ValueError("a csv source must declare its 'encoding' (e.g. gbk, utf-8-sig)")
        if self.kind != "csv" and self.encoding:
            raise ValueError(
                f"'encoding' applies to csv sources only ({self.kind} is read as its format says)"
            )
        if self.kind == "excel" and not self.sheet:
            raise ValueError("an excel source must name its data 'sheet'")
        if self.kind != "excel" and self.sheet:
            raise ValueError(f"'sheet' applies to excel sources only, not {self.kind}")
        if self.kind == "sql" and self.control_file:
            raise ValueError("'control_file' applies to file drops only (sql sources have none)")
        if self.load == "incremental" and not self.watermark_column:
            raise ValueError("an incremental source needs 'watermark_column'")
        if self.load == "incremental" and self.kind != "sql":
            raise ValueError("only sql sources can load incrementally; file drops are snapshots")
        if self.encoding:
            import codecs

            try:
                codecs.lookup(self.encoding)
            except LookupError as exc:
                raise ValueError(f"unknown encoding {self.encoding!r}") from exc
        return self

    @property
    def control_required(self) -> bool:
        """A file drop without its control file fails unless the catalog says it is optional."""
        return self.kind != "sql" and self.control_file != "optional"

    @property
    def read_cost(self) -> int:
        """What a delivered row costs to extract and validate, relative to a CSV row.

        Measured at full scale: an .xlsx sheet's rows come out of the workbook one Python
        row at a time (the 200 k-row taxpayer sheet 3.3 s, a 2 M-row CSV 7.5 s): about 5×.
        """
        return 5 if self.kind == "excel" else 1


CROSS_FIELD_ARITY = {
    "id_matches_birth_date_and_sex": 3,  # id, birth date, sex
    "not_before": 2,  # later, earlier
    "id_kind_matches_applicant_type": 2,  # id, applicant type
}


class CheckDef(_Strict):
    """A rule across fields of one row, e.g. a case is not completed before it was accepted."""

    rule: CheckName
    columns: list[str]
    description: str = ""

    @model_validator(mode="after")
    def _check_arity(self) -> CheckDef:
        if len(self.columns) != CROSS_FIELD_ARITY[self.rule]:
            raise ValueError(
                f"check '{self.rule}' takes {CROSS_FIELD_ARITY[self.rule]} columns, "
                f"got {len(self.columns)}"
            )
        return self


class PublicDef(_Strict):
    """How a dataset is published as open data (issue 12; docs/public.md).

    The quasi-identifiers are the fields flagged ``quasi_identifier``; ``generalise_up_to``
    caps a QI's hierarchy at a level (``applicant_birth_date: 10-year band``,
    ``district_code: city``) so that the gate blocks publication instead of blanking a
    column people need. ``max_suppression``: the share of rows the gate may suppress.
    """

    k: int = 5
    max_suppression: float = Field(default=0.05, ge=0, le=1)
    generalise_up_to: dict[str, str] = Field(default_factory=dict)
    exclude: list[str] = Field(default_factory=list)  # fields never published, whatever level
    themes: list[str] = Field(default_factory=list)  # EU data-theme codes: SOCI, ECON, GOVE …
    keywords: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_k(self) -> PublicDef:
        if self.k < 2:
            raise ValueError(f"public.k must be at least 2 (k-anonymity with k={self.k} is none)")
        return self


class DatasetDef(_Strict):
    """A dataset a department provides (one resource in the catalogue)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    resource_code: str
    title: str
    title_en: str
    description: str = ""
    update_cycle: Literal["daily", "weekly", "monthly"]
    # rows of a full delivery, as the department states it: the night starts the biggest
    # datasets' tasks first (they are its critical path); unset counts as small
    expected_rows: int = Field(default=0, ge=0)
    share_type: Level
    open_type: Level
    source: SourceDef
    key: list[str] = Field(min_length=1)
    # the bad-row share a delivery may have; the breaker trips on a quarantine too large to be
    # chance at this share (etl/breaker.py, docs/decisions/0007)
    quarantine_limit: float = Field(default=0.05, ge=0, le=1)
    # volume check: a snapshot smaller than the last good night by more than this share fails
    # extraction unless a person accepts that date (`lake accept`); 0 rows after rows always
    shrink_limit: float = Field(default=0.10, ge=0, le=1)
    # nights of Iceberg snapshots `lake maintain` keeps for time travel (reruns, volume check)
    retention_nights: int = Field(default=14, ge=1)
    fields: list[FieldDef] = Field(min_length=1)
    checks: list[CheckDef] = Field(default_factory=list)
    public: PublicDef = Field(default_factory=PublicDef)
    department: str = ""  # filled from the file's department block

    @model_validator(mode="after")
    def _check_fields(self) -> DatasetDef:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field(s) declared twice: {', '.join(dupes)}")
        for column in [*self.key, self.source.watermark_column]:
            if column and column not in names:
                raise ValueError(f"{column!r} is used as key/watermark but is not a declared field")
        for f in self.fields:
            if f.name in self.key and not f.required:
                raise ValueError(f"key field {f.name!r} must be required (null keys would merge)")
            if f.type in ("date", "datetime") and f.rule != f.type:
                raise ValueError(f"field {f.name!r} of type {f.type} needs rule: {f.type}")
        for check in self.checks:
            unknown = [c for c in check.columns if c not in names]
            if unknown:
                raise ValueError(f"check '{check.rule}' names undeclared field(s) {unknown}")
        qis = {f.name for f in self.fields if f.quasi_identifier}
        for name in self.public.generalise_up_to:
            if name not in names:
                raise ValueError(f"public quasi-identifier {name!r} is not a declared field")
            if name not in qis:
                raise ValueError(
                    f"public.generalise_up_to names {name!r}, which is not a quasi_identifier"
                )
        for name in self.public.exclude:
            if name not in names:
                raise ValueError(f"public.exclude names {name!r}, which is not a declared field")
        return self

    @property
    def openable(self) -> bool:
        """Published as open data: every open type but 不予开放 (restricted)."""
        return self.open_type != "restricted"

    @property
    def id(self) -> str:
        """``<department>.<dataset>``: unique across the catalog."""
        return f"{self.department}.{self.code}"

    @property
    def expected_work(self) -> int:
        """A full delivery's work in CSV-row equivalents: the night starts the datasets with
        the most first (the longest chains first: the small ones then fill the gaps)."""
        return self.expected_rows * self.source.read_cost

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


class DepartmentDef(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    name_en: str
    system: str = ""


class DepartmentFile(_Strict):
    department: DepartmentDef
    datasets: list[DatasetDef] = Field(min_length=1)


class Catalog:
    """All departments and datasets, indexed by id."""

    def __init__(self, files: Iterable[DepartmentFile]) -> None:
        self.departments: dict[str, DepartmentDef] = {}
        self._datasets: dict[str, DatasetDef] = {}
        for f in files:
            self.departments[f.department.code] = f.department
            for ds in f.datasets:
                self._datasets[ds.id] = ds

    @cached_property
    def datasets(self) -> list[DatasetDef]:
        return list(self._datasets.values())

    def dataset(self, dataset_id: str) -> DatasetDef:
        """Look a dataset up by ``dept.dataset`` (or by its bare code when that is unique)."""
        if dataset_id in self._datasets:
            return self._datasets[dataset_id]
        matches = [d for d in self._datasets.values() if d.code == dataset_id]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(self._datasets))
        hint = "ambiguous, say dept.dataset" if matches else f"known datasets: {known}"
        raise CatalogError(f"unknown dataset '{dataset_id}' ({hint})")

    def department_datasets(self, department: str) -> list[DatasetDef]:
        if department not in self.departments:
            known = ", ".join(sorted(self.departments))
            raise CatalogError(f"unknown department '{department}' (known: {known})")
        return [d for d in self.datasets if d.department == department]


# libyaml's safe loader when PyYAML has it (the same documents, ~9x less CPU): every task
# process parses the DAG file, and the DAG file reads the catalog
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load and check every ``*.yaml`` definition file; raise one error listing all problems."""
    directory = directory or DEFINITIONS_DIR
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise CatalogError(f"no catalog definitions (*.yaml) found in {directory}")
    problems: list[str] = []
    files: list[DepartmentFile] = []
    for path in paths:
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path.name}:{mark.line + 1}" if mark else path.name
            problems.append(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})")
            continue
        try:
            parsed = DepartmentFile.model_validate(data)
        except ValidationError as exc:
            problems.extend(_describe_errors(path, data, exc))
            continue
        parsed = parsed.model_copy(
            update={
                "datasets": [
                    d.model_copy(update={"department": parsed.department.code})
                    for d in parsed.datasets
                ]
            }
        )
        if parsed.department.code != path.stem:
            problems.append(
                f"{path.name}: department code '{parsed.department.code}' must match the file name"
            )
        files.append(parsed)
    if problems:
        raise CatalogError(
            f"{len(problems)} problem(s) in catalog definitions:\n  " + "\n  ".join(problems)
        )
    return Catalog(files)


def _describe_errors(path: Path, data: object, exc: ValidationError) -> list[str]:
    """Turn pydantic's locations into 'file: dataset X, field Y: message'."""
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = [path.name]
        if len(loc) >= 2 and loc[0] == "datasets" and isinstance(loc[1], int):
            where.append(f"dataset '{_lookup(data, ['datasets', loc[1], 'code']) or loc[1]}'")
            rest = loc[2:]
            if len(rest) >= 2 and rest[0] == "fields" and isinstance(rest[1], int):
                name = _lookup(data, ["datasets", loc[1], "fields", rest[1], "name"])
                where.append(f"field '{name or rest[1]}'")
                rest = rest[2:]
            if rest:
                where.append(".".join(str(p) for p in rest))
        elif loc:
            where.append(".".join(str(p) for p in loc))
        out.append(f"{', '.join(where)}: {err['msg']}")
    return out


def _lookup(data: object, path: list[object]) -> object:
    for step in path:
        try:
            data = data[step]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None
    return data
