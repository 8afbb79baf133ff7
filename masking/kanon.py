"""The k-anonymity gate for public microdata, and prosecutor re-identification risk.

Pure library functions (a table in, a table and figures out); publishing calls them and
records :meth:`KAnonResult.report` in the run report. DESIGN §6, issue 12, docs/kanon.md.

How it works, in the ARX way:

* Each quasi-identifier (QI) has a :class:`Hierarchy`: ordered levels, level 0 the value as
  is, each next level a coarsening (birth date → year → 5-year band → 10-year band → ``*``).
* A node of the generalisation lattice picks one level per QI. A node *satisfies* when the
  rows in equivalence classes smaller than k (suppressed) are at most ``max_suppression``.
  Generalising only merges classes, so satisfaction is monotone.
* The search walks the lattice bottom-up and keeps the *minimal* satisfying nodes (no
  direct specialisation satisfies), as OLA does, and picks the one with the least
  information loss (ARX's "Loss" metric, with suppressed rows counted as fully generalised).
  A monotone lower bound of the loss prunes nodes that cannot win.

Everything runs on integer codes: each QI column is dictionary-encoded once, the hierarchy
functions run on the distinct values only, and a node is evaluated on the table of distinct
QI combinations (with counts), rolled up from an evaluated specialisation where there is one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.definitions import FieldDef
from catalog.errors import CatalogError, PublicationBlocked, one_line

__all__ = [
    "AS_IS",
    "SUPPRESSED",
    "Hierarchy",
    "KAnonResult",
    "Level",
    "RiskFigures",
    "age_hierarchy",
    "birth_date_hierarchy",
    "birth_year_hierarchy",
    "categorical_hierarchy",
    "date_hierarchy",
    "division_hierarchy",
    "hierarchy_for",
    "k_anonymise",
    "quasi_identifier_hierarchies",
    "reidentification_risk",
]

Table = pa.Table | pd.DataFrame
Generalise = Callable[[pa.Array], pa.Array]

# --------------------------------------------------------------------------- hierarchies


def AS_IS(values: pa.Array) -> pa.Array:  # noqa: N802 - reads like a constant in level tables
    """Level 0: the value as published before any generalisation."""
    return values


def SUPPRESSED(values: pa.Array) -> pa.Array:  # noqa: N802
    """The top level: every value, NULL included, becomes ``*``."""
    return pa.repeat("*", len(values))


@dataclass(frozen=True)
class Level:
    """One level of a hierarchy: a name for the run report and a vectorised column function.

    The function gets the distinct values of the column (a ``pa.Array``) and returns an
    array of the same length; NULL should stay NULL (unknown is its own class) until ``*``.
    """

    name: str
    generalise: Generalise


@dataclass(frozen=True)
class Hierarchy:
    """Generalisation levels of one quasi-identifier, as data: level 0 must be :func:`AS_IS`.

    The built-ins end in ``*`` (the QI fully suppressed). :meth:`up_to` caps a hierarchy so
    that the gate blocks publication rather than blanking a column people need.
    """

    name: str
    levels: tuple[Level, ...]

    def __post_init__(self) -> None:
        if not self.levels or self.levels[0].generalise is not AS_IS:
            raise CatalogError(f"Hierarchy '{self.name}': level 0 must be AS_IS (the value)")
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise CatalogError(f"Hierarchy '{self.name}': level names must be distinct")

    @property
    def level_names(self) -> list[str]:
        return [level.name for level in self.levels]

    def up_to(self, level_name: str) -> Hierarchy:
        """This hierarchy without the levels above ``level_name`` (the most it may generalise)."""
        if level_name not in self.level_names:
            raise CatalogError(f"Hierarchy '{self.name}' has no level '{level_name}'")
        top = self.level_names.index(level_name)
        return Hierarchy(self.name, self.levels[: top + 1])


def _as_dates(values: pa.Array) -> pa.Array:
    """date32 from date, timestamp or ISO ``YYYY-MM-DD`` string values."""
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), pa.date32())
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = pc.strptime(values, format="%Y-%m-%d", unit="s")
    if pa.types.is_timestamp(values.type) and values.type.tz is not None:
        values = pc.local_timestamp(values)
    return values.cast(pa.date32())


def _text(values: pa.Array) -> pa.Array:
    return pa.nulls(len(values), pa.string()) if pa.types.is_null(values.type) else values


def _band(numbers: pa.Array, width: int) -> pa.Array:
    """``lo-hi`` labels of ``width``-wide bands starting at multiples of width (non-negative)."""
    low = pc.multiply(pc.divide(numbers.cast(pa.int64()), width), width)
    high = pc.add(low, width - 1)
    return pc.binary_join_element_wise(low.cast(pa.string()), high.cast(pa.string()), "-")


def _year(values: pa.Array) -> pa.Array:
    return pc.year(_as_dates(values)).cast(pa.string())


def _year_band(width: int) -> Generalise:
    return lambda values: _band(pc.year(_as_dates(values)), width)


def _year_month(values: pa.Array) -> pa.Array:
    return pc.strftime(_as_dates(values).cast(pa.timestamp("s")), format="%Y-%m")


def _age_band(width: int) -> Generalise:
    def band(values: pa.Array) -> pa.Array:
        return _text(values) if pa.types.is_null(values.type) else _band(values, width)

    return band


def _code_prefix(length: int) -> Generalise:
    def prefix(values: pa.Array) -> pa.Array:
        return pc.utf8_slice_codeunits(_text(values).cast(pa.string()), 0, length)

    return prefix


def birth_date_hierarchy(name: str = "birth_date") -> Hierarchy:
    """birth date → year → 5-year band → 10-year band → ``*`` (DESIGN §6 public rule)."""
    return Hierarchy(
        name,
        (
            Level("date", AS_IS),
            Level("year", _year),
            Level("5-year band", _year_band(5)),
            Level("10-year band", _year_band(10)),
            Level("*", SUPPRESSED),
        ),
    )


def birth_year_hierarchy(name: str = "birth_year") -> Hierarchy:
    """Birth year (integer or text) → 5-year band → 10-year band → ``*``.

    For a column already generalised to the year (the public rule for birth dates); the
    level names are those of :func:`birth_date_hierarchy`, so caps read the same.
    """

    def years(width: int) -> Generalise:
        def band(values: pa.Array) -> pa.Array:
            if pa.types.is_null(values.type):
                return pa.nulls(len(values), pa.string())
            return _band(values.cast(pa.int64()), width)

        return band

    return Hierarchy(
        name,
        (
            Level("year", AS_IS),
            Level("5-year band", years(5)),
            Level("10-year band", years(10)),
            Level("*", SUPPRESSED),
        ),
    )


def date_hierarchy(name: str = "date") -> Hierarchy:
    """A date that is not a birth date (an event): date → year-month → year → ``*``."""
    return Hierarchy(
        name,
        (
            Level("date", AS_IS),
            Level("year-month", _year_month),
            Level("year", _year),
            Level("*", SUPPRESSED),
        ),
    )


def age_hierarchy(name: str = "age") -> Hierarchy:
    """Age in whole years (non-negative): age → 5-year band → 10-year band → ``*``."""
    return Hierarchy(
        name,
        (
            Level("age", AS_IS),
            Level("5-year band", _age_band(5)),
            Level("10-year band", _age_band(10)),
            Level("*", SUPPRESSED),
        ),
    )


def division_hierarchy(name: str = "division_code") -> Hierarchy:
    """GB/T 2260 division code → district (6 digits) → city (4 digits, 4407) → ``*``.

    A 9- or 12-digit town/village code becomes its 6-digit district at level "district";
    a 6-digit code (every resident division in ``catalog.identifiers.JIANGMEN_DIVISIONS``)
    already is one, so the first two levels group it alike. Retired codes (440721 新会县 …)
    stay as they are at the district level: they are district-level codes of their time,
    and mapping them to today's districts is a recode, not a generalisation (440711 郊区
    split). Codes outside Jiangmen generalise to their own city prefix.
    """
    return Hierarchy(
        name,
        (
            Level("code", AS_IS),
            Level("district", _code_prefix(6)),
            Level("city", _code_prefix(4)),
            Level("*", SUPPRESSED),
        ),
    )


def categorical_hierarchy(name: str) -> Hierarchy:
    """A categorical value with no natural grouping (sex, ethnicity, type): value → ``*``."""
    return Hierarchy(name, (Level("value", AS_IS), Level("*", SUPPRESSED)))


def hierarchy_for(field_def: FieldDef) -> Hierarchy:
    """The default hierarchy of a catalog field, by PII kind, rule and type."""
    if field_def.pii == "birth_date":
        return birth_date_hierarchy(field_def.name)
    if field_def.rule == "division_code":
        return division_hierarchy(field_def.name)
    if field_def.type in ("date", "datetime"):
        return date_hierarchy(field_def.name)
    if field_def.type == "integer" and field_def.name.split("_")[-1] == "age":
        return age_hierarchy(field_def.name)
    return categorical_hierarchy(field_def.name)


def quasi_identifier_hierarchies(fields: Sequence[FieldDef]) -> dict[str, Hierarchy]:
    """``{field name: default hierarchy}`` for the fields the catalog marks as QIs."""
    return {f.name: hierarchy_for(f) for f in fields if f.quasi_identifier}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RiskFigures:
    """Prosecutor re-identification risk of a table, as ARX reports it (1 / class size)."""

    records: int
    classes: int
    smallest_class: int
    highest_risk: float  # 1 / smallest class
    average_risk: float  # mean over records of 1 / class size = classes / records
    records_at_risk: float  # share of records whose risk exceeds the threshold
    threshold: float


@dataclass(frozen=True)
class KAnonResult:
    """The generalised table (suppressed rows removed) and what the run report records."""

    table: Table = field(repr=False)
    k: int
    achieved_k: int
    levels: dict[str, str]
    suppressed_rows: int
    suppressed_share: float
    risk: RiskFigures
    information_loss: float
    nodes_evaluated: int
    lattice_size: int

    @property
    def highest_risk(self) -> float:
        return self.risk.highest_risk

    @property
    def average_risk(self) -> float:
        return self.risk.average_risk

    def report(self) -> dict[str, Any]:
        """JSON-safe figures for the run report (no data values)."""
        return {
            "k": self.k,
            "achieved_k": self.achieved_k,
            "generalisation": dict(self.levels),
            "rows_published": self.risk.records,
            "suppressed_rows": self.suppressed_rows,
            "suppressed_share": self.suppressed_share,
            "classes": self.risk.classes,
            "highest_risk": self.risk.highest_risk,
            "average_risk": self.risk.average_risk,
            "information_loss": self.information_loss,
            "nodes_evaluated": self.nodes_evaluated,
            "lattice_size": self.lattice_size,
        }


# --------------------------------------------------------------------------- encoding


def _column(table: Table, name: str) -> pa.Array | pd.Series:
    if isinstance(table, pd.DataFrame):
        return table[name]
    return table.column(name).combine_chunks()


def _encoded(column: pa.Array | pd.Series) -> tuple[np.ndarray, pa.Array]:
    """Integer codes per row and the distinct values; NULL is a value of its own."""
    if isinstance(column, pd.Series):
        codes, uniques = pd.factorize(column, use_na_sentinel=False)
        values = pa.array(uniques, from_pandas=True)
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        return codes.astype(np.int64), values
    if isinstance(column, pa.ChunkedArray):  # what some kernels return for empty input
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    encoded = column.dictionary_encode(null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def _group_ids(
    codes: Sequence[np.ndarray], cards: Sequence[int], size: int
) -> tuple[np.ndarray, int]:
    """Dense ids of the distinct code combinations of ``size`` rows (mixed radix, re-densified
    before it could overflow); no codes at all is one group."""
    key, card = np.zeros(size, dtype=np.int64), 1
    for values, values_card in zip(codes, cards, strict=True):
        if card * max(values_card, 1) >= 2**62:
            key, uniques = pd.factorize(key)
            card = len(uniques)
        key, card = key * max(values_card, 1) + values, card * max(values_card, 1)
    if card <= size // 4 + 1024:  # small key space: counting beats sorting or hashing
        present = np.bincount(key, minlength=card) > 0
        dense = np.cumsum(present) - 1
        return dense[key], int(present.sum())
    uniques, ids = np.unique(key, return_inverse=True)
    return ids.astype(np.int64, copy=False), len(uniques)


@dataclass
class _QI:
    """One QI, dictionary-encoded, with its hierarchy evaluated on the distinct values."""

    name: str
    hierarchy: Hierarchy
    labels: list[pa.Array]  # generalised distinct values per level
    codes: list[np.ndarray]  # per level: base value code → code at that level
    parents: list[np.ndarray]  # per level l < top: code at l → code at l + 1
    value_loss: list[np.ndarray]  # per level: code → (leaves - 1) / (domain - 1)
    row_loss: list[float]  # per level: mean value loss over rows

    @property
    def height(self) -> int:
        return len(self.labels)


def _qi(name: str, hierarchy: Hierarchy, uniques: pa.Array, base_counts: np.ndarray) -> _QI:
    domain = len(uniques)
    labels, codes, parents, losses, row_losses = [], [], [], [], []
    total = base_counts.sum()
    for depth, level in enumerate(hierarchy.levels):
        try:
            generalised = level.generalise(uniques) if depth else uniques
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise CatalogError(
                f"Hierarchy '{hierarchy.name}' level '{level.name}' cannot generalise "
                f"'{name}': {one_line(exc)}"
            ) from exc
        if len(generalised) != domain:
            raise CatalogError(f"Hierarchy '{hierarchy.name}' level '{level.name}' changed length")
        code, label = _encoded(generalised) if depth else (np.arange(domain), uniques)
        code = code.astype(np.int64)
        if depth:
            parent = np.full(len(labels[-1]), -1, dtype=np.int64)
            parent[codes[-1]] = code
            if not np.array_equal(parent[codes[-1]], code):
                raise CatalogError(
                    f"Hierarchy '{hierarchy.name}' level '{level.name}' is not a coarsening "
                    f"of level '{hierarchy.levels[depth - 1].name}'"
                )
            parents.append(parent)
        leaves = np.bincount(code, minlength=len(label))
        loss = (leaves - 1) / (domain - 1) if domain > 1 else np.zeros(len(label))
        labels.append(label)
        codes.append(code)
        losses.append(loss)
        row_losses.append(float(base_counts @ loss[code] / total) if total else 0.0)
    return _QI(name, hierarchy, labels, codes, parents, losses, row_losses)


# --------------------------------------------------------------------------- search


@dataclass
class _Classes:
    """Equivalence classes at one node: codes per QI at that node's levels, and sizes."""

    node: tuple[int, ...]
    codes: list[np.ndarray]
    sizes: np.ndarray


def _lifted(qi: _QI, code: np.ndarray, start: int, level: int) -> np.ndarray:
    """Codes at ``start`` lifted to codes at ``level`` through the parent maps."""
    for step in range(start, level):
        code = qi.parents[step][code]
    return code


def _rolled_up(source: _Classes, node: tuple[int, ...], qis: list[_QI]) -> _Classes:
    """The classes at ``node`` from those of a specialisation (each level ≥ the source's)."""
    if node == source.node:
        return source
    codes = [
        _lifted(qi, code, start, level)
        for qi, code, start, level in zip(qis, source.codes, source.node, node, strict=True)
    ]
    cards = [len(qi.labels[level]) for qi, level in zip(qis, node, strict=True)]
    ids, count = _group_ids(codes, cards, len(source.sizes))
    sizes = np.bincount(ids, weights=source.sizes, minlength=count).astype(np.int64)
    merged = []
    for code in codes:
        representative = np.empty(count, dtype=np.int64)
        representative[ids] = code
        merged.append(representative)
    return _Classes(node, merged, sizes)


def _loss(classes: _Classes, qis: list[_QI], k: int, records: int) -> float:
    """Mean over records and QIs of the value loss; a suppressed record counts as 1 per QI."""
    if not records:
        return 0.0
    if not qis:
        return float(classes.sizes[classes.sizes < k].sum() / records)
    kept = classes.sizes >= k
    total = float((classes.sizes[~kept]).sum()) * len(qis)
    for qi, level, code in zip(qis, classes.node, classes.codes, strict=True):
        total += float(classes.sizes[kept] @ qi.value_loss[level][code[kept]])
    return total / (records * len(qis))


def _suppressed(classes: _Classes, k: int) -> int:
    return int(classes.sizes[classes.sizes < k].sum())


def _predecessors(node: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [node[:i] + (level - 1,) + node[i + 1 :] for i, level in enumerate(node) if level]


@dataclass
class _Search:
    """Bottom-up lattice walk for the minimal satisfying node of least loss."""

    qis: list[_QI]
    base: _Classes
    k: int
    limit: int  # most rows that may be suppressed
    records: int
    evaluated: int = 0
    best: tuple[float, tuple[int, ...]] | None = None

    def lower_bound(self, node: tuple[int, ...]) -> float:
        """Loss if nothing were suppressed: monotone, and ≤ the loss of every generalisation."""
        if not self.qis:
            return 0.0
        return sum(qi.row_loss[level] for qi, level in zip(self.qis, node, strict=True)) / len(
            self.qis
        )

    def run(self) -> None:
        nodes = sorted(
            itertools.product(*(range(qi.height) for qi in self.qis)), key=lambda n: (sum(n), n)
        )
        satisfied: set[tuple[int, ...]] = set()
        cache: dict[tuple[int, ...], _Classes] = {self.base.node: self.base}
        height = 0
        for node in nodes:
            if sum(node) > height:  # classes two heights down are never rolled up from again
                height = sum(node)
                cache = {n: c for n, c in cache.items() if sum(n) >= height - 1}
            predecessors = _predecessors(node)
            if any(p in satisfied for p in predecessors):
                satisfied.add(node)  # satisfies, but not minimal
                continue
            if self.best is not None and self.lower_bound(node) > self.best[0] + 1e-12:
                continue  # neither it nor any generalisation can have less loss
            sources = [cache[p] for p in predecessors if p in cache] or [self.base]
            classes = _rolled_up(min(sources, key=lambda c: len(c.sizes)), node, self.qis)
            self.evaluated += 1
            cache[node] = classes
            if _suppressed(classes, self.k) <= self.limit:
                satisfied.add(node)
                score = (round(_loss(classes, self.qis, self.k, self.records), 12), node)
                if self.best is None or score < self.best:
                    self.best = score


def _checked(
    table: Table, names: Sequence[str], k: int | None = None, max_suppression: float = 0.0
) -> None:
    if k is not None and (not isinstance(k, int) or k < 2):
        raise CatalogError(f"k-anonymity needs k ≥ 2, got k={k}")
    if not 0.0 <= max_suppression <= 1.0:
        raise CatalogError(f"max_suppression must be a share in [0, 1], got {max_suppression}")
    columns = list(table.columns) if isinstance(table, pd.DataFrame) else table.column_names
    missing = [name for name in names if name not in columns]
    if missing:
        raise CatalogError(f"Quasi-identifier(s) not in the table: {', '.join(missing)}")
    if len(set(names)) != len(names):
        raise CatalogError("A quasi-identifier is named twice")


def _base(table: Table, names: Sequence[str]) -> tuple[list[np.ndarray], list[pa.Array]]:
    encoded = [_encoded(_column(table, name)) for name in names]
    return [codes for codes, _ in encoded], [uniques for _, uniques in encoded]


def k_anonymise(
    table: Table,
    quasi_identifiers: Mapping[str, Hierarchy],
    k: int = 5,
    max_suppression: float = 0.05,
    *,
    dataset: str | None = None,
    risk_threshold: float | None = None,
) -> KAnonResult:
    """Generalise the QIs to the least-loss minimal node that is k-anonymous once the rows of
    classes smaller than k are removed, with at most ``max_suppression`` of rows removed.

    Returns a table of the input's kind: suppressed rows removed (a DataFrame keeps its
    index), QIs above level 0 replaced by their generalised labels (strings), other columns
    untouched. No QIs means one class of all rows. Raises :class:`PublicationBlocked` when
    no node meets the suppression limit, :class:`CatalogError` on bad arguments.
    """
    names = list(quasi_identifiers)
    _checked(table, names, k, max_suppression)
    if risk_threshold is not None and not 0.0 <= risk_threshold <= 1.0:
        raise CatalogError(f"Risk threshold must be in [0, 1], got {risk_threshold}")
    records = len(table)
    row_codes, uniques = _base(table, names)
    qis = [
        _qi(name, quasi_identifiers[name], values, np.bincount(codes, minlength=len(values)))
        for name, codes, values in zip(names, row_codes, uniques, strict=True)
    ]
    row_class, count = _group_ids(row_codes, [len(values) for values in uniques], records)
    sizes = np.bincount(row_class, minlength=count).astype(np.int64)
    base_codes = []
    for codes in row_codes:
        representative = np.empty(count, dtype=np.int64)
        representative[row_class] = codes
        base_codes.append(representative)
    base = _Classes(tuple(0 for _ in qis), base_codes, sizes)
    limit = int(np.floor(max_suppression * records + 1e-9))
    search = _Search(qis, base, k, limit, records)
    search.run()
    lattice_size = int(np.prod([qi.height for qi in qis])) if qis else 1
    if search.best is None:
        top = _rolled_up(base, tuple(qi.height - 1 for qi in qis), qis)
        share = _suppressed(top, k) / records
        subject = f"'{dataset}'" if dataset else "the table"
        raise PublicationBlocked(
            f"Publication of {subject} blocked: no generalisation reaches k={k} within "
            f"{max_suppression:.1%} suppression (best achievable {share:.1%})"
        )
    node = search.best[1]
    # Class size of every base combination at the chosen node, then keep or drop each row.
    lifted = [
        _lifted(qi, code, 0, level) for qi, code, level in zip(qis, base_codes, node, strict=True)
    ]
    cards = [len(qi.labels[level]) for qi, level in zip(qis, node, strict=True)]
    ids, classes = _group_ids(lifted, cards, count)
    class_sizes = np.bincount(ids, weights=sizes, minlength=classes).astype(np.int64)
    keep_rows = (class_sizes >= k)[ids][row_class]
    published = _published(table, qis, node, row_codes, keep_rows)
    suppressed = int(records - keep_rows.sum())
    risk = _risk(
        class_sizes[class_sizes >= k], 1.0 / k if risk_threshold is None else risk_threshold
    )
    return KAnonResult(
        table=published,
        k=k,
        achieved_k=risk.smallest_class,
        levels={
            qi.name: qi.hierarchy.levels[level].name for qi, level in zip(qis, node, strict=True)
        },
        suppressed_rows=suppressed,
        suppressed_share=suppressed / records if records else 0.0,
        risk=risk,
        information_loss=search.best[0],
        nodes_evaluated=search.evaluated,
        lattice_size=lattice_size,
    )


def _published(
    table: Table,
    qis: list[_QI],
    node: tuple[int, ...],
    row_codes: list[np.ndarray],
    keep: np.ndarray,
) -> Table:
    """The input with suppressed rows removed and QIs replaced by their labels at ``node``."""
    if isinstance(table, pd.DataFrame):
        out = table.loc[keep].copy()
        for qi, level, codes in zip(qis, node, row_codes, strict=True):
            if level:
                values = qi.labels[level].take(pa.array(qi.codes[level][codes[keep]]))
                out[qi.name] = pd.Series(values.to_pandas().array, index=out.index)
        return out
    out = table.filter(pa.array(keep))
    for qi, level, codes in zip(qis, node, row_codes, strict=True):
        if level:
            values = qi.labels[level].take(pa.array(qi.codes[level][codes[keep]]))
            position = out.schema.get_field_index(qi.name)
            out = out.set_column(position, pa.field(qi.name, values.type), values)
    return out


# --------------------------------------------------------------------------- risk


def _risk(class_sizes: np.ndarray, threshold: float) -> RiskFigures:
    records = int(class_sizes.sum())
    if not records:
        return RiskFigures(0, 0, 0, 0.0, 0.0, 0.0, threshold)
    smallest = int(class_sizes.min())
    at_risk = int(class_sizes[1.0 / class_sizes > threshold].sum())
    return RiskFigures(
        records=records,
        classes=len(class_sizes),
        smallest_class=smallest,
        highest_risk=1.0 / smallest,
        average_risk=len(class_sizes) / records,
        records_at_risk=at_risk / records,
        threshold=threshold,
    )


def reidentification_risk(
    table: Table, quasi_identifiers: Sequence[str], threshold: float = 0.2
) -> RiskFigures:
    """Prosecutor risk of a table as it stands: classes are equal QI values, NULL included.

    ``records_at_risk`` is the share of records whose risk (1 / class size) exceeds
    ``threshold`` (0.2 = classes smaller than 5). No QIs: all records form one class.
    """
    names = list(quasi_identifiers)
    _checked(table, names)
    if not 0.0 <= threshold <= 1.0:
        raise CatalogError(f"Risk threshold must be in [0, 1], got {threshold}")
    row_codes, uniques = _base(table, names)
    ids, count = _group_ids(row_codes, [len(values) for values in uniques], len(table))
    return _risk(np.bincount(ids, minlength=count), threshold)
