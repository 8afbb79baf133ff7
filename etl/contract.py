"""The delivery contract: what a delivery must prove before it may replace the last one.

Three checks, all at extraction, before the new raw partition is committed, so a failing
delivery leaves the last good raw partition in place (docs/architecture.md §5 "Delivery
contract", decision 0008):

- **control file** beside every file drop (``<file>.ctl``, JSON ``{"rows": N, "sha256":
  "…"}``): the data file's SHA-256 is checked before a row is read, the row count after
  the last row is read;
- **header**: catalog columns missing, a column named twice, a header cell that looks
  like data — checked on the header alone, so also on 0-row deliveries;
- **volume**: a snapshot that shrank past the catalog's ``shrink_limit`` against the last
  good night, or 0 rows after a night with rows, unless a person accepted that date
  (full snapshots; an empty incremental window is a quiet day).

Messages are one line naming the dataset and file. They never quote a delivered header
cell or value (it may be an ID, a name or a phone number): positions and catalog names only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from catalog.definitions import DatasetDef
from catalog.errors import BreakerTripped, SourceError
from etl.rules import FIELD_RULES

_FAR_FUTURE = date(9999, 12, 31)

CONTROL_SUFFIX = ".ctl"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# rules that also pass ordinary words, so a header cell passing them says nothing
_WORDLIKE_RULES = {"enterprise_name"}
# an ID number, a mobile number, or a date written the way departments write them
_DATA_PATTERN = r"[0-9]{15}|[0-9]{17}[0-9Xx]|1[3-9][0-9]{9}|[0-9]{4}[-/年.][0-9]{1,2}"


@dataclass(frozen=True)
class ControlFile:
    """What the department says it sent: the data file's rows and SHA-256."""

    path: Path
    rows: int
    sha256: str

    def as_extra(self) -> dict:
        return {"file": self.path.name, "rows": self.rows, "sha256": self.sha256}


def control_path(data_file: Path) -> Path:
    """``insured_person_20261128.csv`` → ``insured_person_20261128.csv.ctl``."""
    return data_file.with_name(data_file.name + CONTROL_SUFFIX)


def verified_control_file(dataset: DatasetDef, data_file: Path) -> ControlFile | None:
    """The drop's control file, with the data file's SHA-256 checked against it.

    ``None`` when there is none and the catalog says it is optional; a missing required
    control file, an unreadable one or a checksum that differs is a :class:`SourceError`.
    """
    ctl = control_path(data_file)
    if not ctl.is_file():
        if dataset.source.control_required:
            raise SourceError(
                f"{dataset.id}: no control file {ctl.name} beside {data_file} (the catalog "
                "requires one: rows and SHA-256 of the data file)"
            )
        return None
    control = _read_control_file(dataset, ctl)
    if file_sha256(data_file) != control.sha256:
        raise SourceError(
            f"{dataset.id}: {data_file} does not match its control file {ctl.name}: SHA-256 "
            "differs (cut short, still being written, or changed after the control file)"
        )
    return control


def _read_control_file(dataset: DatasetDef, ctl: Path) -> ControlFile:
    try:
        body = json.loads(ctl.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"{dataset.id}: control file {ctl} is not JSON") from exc
    rows = body.get("rows") if isinstance(body, dict) else None
    sha = body.get("sha256") if isinstance(body, dict) else None
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise SourceError(f"{dataset.id}: control file {ctl} has no row count ('rows': N)")
    if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha.lower()):
        raise SourceError(f"{dataset.id}: control file {ctl} has no SHA-256 ('sha256': 64 hex)")
    return ControlFile(ctl, rows, sha.lower())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_row_count(dataset: DatasetDef, location: str, control: ControlFile, rows: int) -> None:
    """After the last row: the rows read must be the rows the control file announced."""
    if rows != control.rows:
        raise SourceError(
            f"{dataset.id}: {location} holds {rows:,} rows, its control file "
            f"{control.path.name} says {control.rows:,}"
        )


# --- header ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderReport:
    """How a delivered header differs from the catalog. Positions are 1-based."""

    missing: list[str]  # catalog names
    added: list[int]  # positions of columns the catalog does not declare
    duplicated: dict[str, list[int]]  # catalog name (or "column N") -> positions
    unnamed: list[int]
    data_like: list[int]

    @property
    def problems(self) -> list[str]:
        """Each breach of the contract in words, without a delivered header cell."""
        out = []
        if self.data_like:
            out.append(f"header looks like data ({_columns(self.data_like)})")
        if self.missing:
            renamed = " (renamed?)" if self.added else ""
            out.append(f"catalog column(s) {', '.join(self.missing)} missing{renamed}")
        out += [f"{name} appears twice ({_columns(at)})" for name, at in self.duplicated.items()]
        if self.unnamed:
            out.append(f"no name in the header ({_columns(self.unnamed)})")
        return out


def _columns(positions: list[int]) -> str:
    word = "column" if len(positions) == 1 else "columns"
    return f"{word} {', '.join(str(p) for p in positions)}"


def header_report(dataset: DatasetDef, columns: list[str]) -> HeaderReport:
    """Compare a delivered header with the catalog, looking at the header alone."""
    names = pd.Series(columns, dtype="string").str.strip()
    catalog = set(dataset.field_names)
    known = names.isin(catalog).to_numpy(dtype=bool)
    blank = (names.fillna("") == "").to_numpy(dtype=bool)
    data_like = ~known & ~blank & looks_like_data(names, dataset)
    duplicated: dict[str, list[int]] = {}
    for name, group in names[names.duplicated(keep=False) & ~pd.Series(blank)].groupby(names):
        positions = [int(i) + 1 for i in group.index]
        label = f"'{name}'" if name in catalog else f"the name of column {positions[0]}"
        duplicated[label] = positions
    return HeaderReport(
        missing=[f for f in dataset.field_names if f not in set(names.dropna())],
        added=[int(i) + 1 for i in np.flatnonzero(~known & ~blank)],
        duplicated=duplicated,
        unnamed=[int(i) + 1 for i in np.flatnonzero(blank)],
        data_like=[int(i) + 1 for i in np.flatnonzero(data_like)],
    )


def looks_like_data(cells: pd.Series, dataset: DatasetDef) -> np.ndarray:
    """Header cells that look like a delivered value, not a column name.

    An ID or mobile number or a date inside the cell, mostly digits, a value one of the
    dataset's field rules accepts (a USCC, an organisation code …) or one of a field's
    allowed values (正常, 男 …). Names of people cannot be told from column names this
    way; a headerless file is still caught by the ID, phone and date cells in its first row.
    """
    text = cells.fillna("").astype("string")
    found = text.str.contains(_DATA_PATTERN, regex=True).to_numpy(dtype=bool)
    chars = text.str.replace(r"\s", "", regex=True)
    digits = chars.str.count(r"[0-9]").to_numpy(dtype=float)
    found |= digits > 0.5 * np.maximum(chars.str.len().to_numpy(dtype=float), 1)
    present = (chars != "").to_numpy(dtype=bool)
    for f in dataset.fields:
        if f.rule and f.rule not in _WORDLIKE_RULES:
            # any date will do for a dated rule: the question is the shape, not the night
            found |= present & FIELD_RULES[f.rule].passes(text, as_of=_FAR_FUTURE)
        if f.allowed:
            found |= text.isin(f.allowed).to_numpy(dtype=bool)
    return found


def check_header(dataset: DatasetDef, location: str, columns: list[str]) -> HeaderReport:
    """Fail the dataset on a header that breaks the contract; return the report otherwise.

    Added columns alone are allowed (kept in raw, noted at validation).
    """
    report = header_report(dataset, columns)
    if report.problems:
        raise SourceError(
            f"{dataset.id}: header of {location} breaks the catalog contract: "
            + "; ".join(report.problems)
        )
    return report


# --- volume ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LastGoodNight:
    ds: date
    rows: int


def volume_problem(dataset: DatasetDef, rows: int, last: LastGoodNight | None) -> str | None:
    """Why ``rows`` is not a believable delivery after ``last``, or ``None`` if it is.

    Full snapshots only: 0 rows after a night with rows, or a shrink of more than
    ``shrink_limit`` (default 10 %) — a cut export looks exactly like mass deletions. An
    incremental window holds what changed, so an empty one is a quiet day (decision 0008).
    """
    if last is None or last.rows == 0 or dataset.source.load != "snapshot":
        return None
    if rows == 0:
        return f"0 rows delivered, {last.rows:,} on the last good night {last.ds}"
    shrink = 1 - rows / last.rows
    if shrink > dataset.shrink_limit:
        return (
            f"snapshot shrank by {shrink:.1%} ({rows:,} rows, {last.rows:,} on the last good "
            f"night {last.ds}), more than the limit of {dataset.shrink_limit:.0%}"
        )
    return None


def volume_breaker(dataset: DatasetDef, ds: date, location: str, problem: str) -> BreakerTripped:
    return BreakerTripped(
        f"{dataset.id} {ds}: volume check of {location}: {problem}; nothing replaced. "
        f"If the change is real: lake accept {dataset.id} --date {ds} --reason '…', "
        "then run the night again"
    )
