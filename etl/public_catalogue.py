"""What the public zone holds now, as :class:`catalog.dcat.PublicEntry` objects.

Read from the catalog store (which public partitions exist, their lineage) and from each
partition's manifest (files, byte sizes, checksums, k-anonymity figures), so the DCAT file
and the portal page describe exactly the files on disk, including a dataset whose latest
publication is older because the gate blocked tonight's.
"""

from __future__ import annotations

from datetime import date

import pyarrow.parquet as pq

from catalog.dcat import PLATFORM, FieldEntry, PublicEntry
from catalog.definitions import Catalog
from catalog.lineage import source_deliveries, upstream
from catalog.store import CatalogStore
from etl.zones import PUBLIC, Lake, Manifest

STATS_THEMES = {"xingzheng": "GOVE", "gongshang": "ECON", "gongan": "SOCI"}


def published_entries(
    catalog: Catalog, lake: Lake, store: CatalogStore, ds: date
) -> list[PublicEntry]:
    """The latest committed publication (on or before ``ds``) of every public table."""
    latest = {}
    for record in store.partitions(zone=PUBLIC):
        if record.ds <= ds:
            latest[record.dataset_id] = record  # partitions() is ordered by date
    entries = []
    for name in sorted(latest, key=lambda n: (n.startswith("stats/"), n)):
        record = latest[name]
        manifest = lake.read_manifest(record.path)
        if manifest is None:
            continue
        entries.append(_entry(catalog, lake, store, name, record.ds, manifest))
    return entries


def _relative(lake: Lake, path: str) -> str:
    return path.removeprefix(lake.root + "/")


def _lineage(lake: Lake, store: CatalogStore, path: str) -> list[str]:
    tree = upstream(store, path)
    lines = [f"来自 {_relative(lake, link.path)} ({link.rows or 0:,} 行)" for link in tree.links]
    for leaf in source_deliveries(tree):
        if leaf.path != path:
            lines.append(
                f"源数据 {_relative(lake, leaf.path)} ({leaf.rows or 0:,} 行, {leaf.fingerprint})"
            )
    return list(dict.fromkeys(lines))


def _entry(
    catalog: Catalog, lake: Lake, store: CatalogStore, name: str, ds: date, manifest: Manifest
) -> PublicEntry:
    extra = manifest.extra
    schema = pq.read_schema(f"{manifest.path}/{manifest.files[0]}", filesystem=lake.fs)
    distributions = [
        {**d, "url": f"{name}/dt={ds.isoformat()}/{d['file']}"} for d in extra["distributions"]
    ]
    common = {
        "name": name,
        "ds": ds,
        "modified": manifest.written_at,
        "temporal": extra.get("temporal"),
        "rows": manifest.rows,
        "distributions": distributions,
        "lineage": _lineage(lake, store, manifest.path),
    }
    if extra.get("kind") == "statistics":
        columns = extra.get("columns", {})
        fields = [
            FieldEntry(f.name, *columns.get(f.name, (f.name, f.name)), str(f.type)) for f in schema
        ]
        departments = sorted({s.split(".")[0] for s in extra.get("sources", [])})
        table = lake.read_partition(manifest.path)
        return PublicEntry(
            kind="statistics",
            title=extra["title"],
            title_en=extra["title_en"],
            description=extra["description"],
            description_en=extra["description_en"],
            publisher=PLATFORM,
            themes=sorted({STATS_THEMES.get(d, "GOVE") for d in departments}),
            keywords=["数字邑门式", "统计", "statistics", *departments],
            update_cycle="daily",
            fields=fields,
            data=table.to_pylist(),
            **common,
        )
    dataset = catalog.dataset(name)
    department = catalog.departments[dataset.department]
    by_name = {f.name: f for f in dataset.fields}
    fields = []
    for f in schema:
        rule = (f.metadata or {}).get(b"masking", b"keep").decode()
        described = by_name[f.name].description if f.name in by_name else f.name
        fields.append(
            FieldEntry(
                f.name,
                described + ("" if rule == "keep" else f" ({rule})"),
                f"{f.name} ({rule})",
                str(f.type),
            )
        )
    return PublicEntry(
        kind="microdata",
        title=dataset.title,
        title_en=dataset.title_en,
        description=f"{department.name}{dataset.title}数据，已去标识化 (公开规则与 k-匿名)。",
        description_en=f"{dataset.description} De-identified (public rules, k-anonymity).",
        publisher=(department.name, department.name_en),
        themes=dataset.public.themes or ["GOVE"],
        keywords=dataset.public.keywords or [dataset.title, dataset.title_en],
        update_cycle=dataset.update_cycle,
        fields=fields,
        kanon=extra.get("kanon"),
        **common,
    )
