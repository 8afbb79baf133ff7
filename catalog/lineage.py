"""Lineage: where a partition came from and where it went (DESIGN §7, issue 12).

The store records, for each output partition, the input partitions that made it
(``raw/sources`` → ``raw/clean``/``raw/quarantine`` at validation; ``raw/clean`` →
``public`` at publication; unification and shared extracts add theirs the same way).
These functions walk those edges; ``lake lineage PATH`` prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from catalog.errors import CatalogError
from catalog.store import CatalogStore


@dataclass
class LineageNode:
    path: str
    zone: str | None
    dataset_id: str | None
    rows: int | None
    fingerprint: str | None
    run_id: str | None
    links: list[LineageNode] = field(default_factory=list)  # inputs (upstream) or outputs


def _node(store: CatalogStore, path: str) -> LineageNode:
    record = store.partition_at(path)
    if record is None:
        return LineageNode(path, None, None, None, None, None)
    return LineageNode(
        path, record.zone, record.dataset_id, record.rows, record.fingerprint, record.run_id
    )


def upstream(store: CatalogStore, path: str, _seen: frozenset[str] = frozenset()) -> LineageNode:
    """The partition at ``path`` and, recursively, the partitions it was made from."""
    node = _node(store, path)
    if path not in _seen:
        node.links = [upstream(store, p, _seen | {path}) for p in store.lineage_inputs(path)]
    return node


def downstream(store: CatalogStore, path: str, _seen: frozenset[str] = frozenset()) -> LineageNode:
    """The partition at ``path`` and, recursively, the partitions made from it."""
    node = _node(store, path)
    if path not in _seen:
        node.links = [downstream(store, p, _seen | {path}) for p in store.lineage_outputs(path)]
    return node


def source_deliveries(node: LineageNode) -> list[LineageNode]:
    """The leaves of an upstream tree: the deliveries (``raw/sources``) it all came from."""
    if not node.links:
        return [node]
    return [leaf for link in node.links for leaf in source_deliveries(link)]


def lineage(store: CatalogStore, path: str) -> tuple[LineageNode, LineageNode]:
    """Upstream and downstream trees of a recorded partition; unknown path → CatalogError."""
    if (
        store.partition_at(path) is None
        and not store.lineage_inputs(path)
        and not store.lineage_outputs(path)
    ):
        raise CatalogError(
            f"lineage: no partition recorded at {path} "
            "(give a partition folder such as <lake>/public/<dataset>/dt=YYYY-MM-DD)"
        )
    return upstream(store, path), downstream(store, path)


def lineage_lines(
    tree: LineageNode,
    *,
    shown: Callable[[str], str] = lambda p: p,
    detail: Callable[[str], str] = lambda p: "",
    depth: int = 0,
) -> list[str]:
    """An indented text rendering: path, zone, rows, fingerprint (and ``detail``, e.g. the
    delivery's source) per node."""
    facts = []
    if tree.zone:
        facts.append(tree.zone)
    if tree.rows is not None:
        facts.append(f"{tree.rows:,} rows")
    if tree.fingerprint:
        facts.append(tree.fingerprint[:19] + "…")
    extra = detail(tree.path)
    if extra:
        facts.append(extra)
    line = "  " * depth + shown(tree.path) + (f"  [{', '.join(facts)}]" if facts else "")
    lines = [line]
    for link in tree.links:
        lines += lineage_lines(link, shown=shown, detail=detail, depth=depth + 1)
    return lines
