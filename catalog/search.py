"""``lake catalog search WORD``: datasets and fields by Chinese or English words.

Looks in dataset codes, titles (Chinese and English), descriptions, resource codes, public
keywords, department names, and in field names and descriptions, case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.definitions import Catalog


@dataclass(frozen=True)
class SearchHit:
    dataset_id: str
    field: str | None  # None: the dataset itself matched
    text: str  # what to show: the title or the field description


def search_catalog(catalog: Catalog, word: str) -> list[SearchHit]:
    """Every dataset and field whose names or descriptions contain ``word``."""
    needle = word.strip().casefold()
    if not needle:
        return []
    hits = []
    for ds in catalog.datasets:
        department = catalog.departments[ds.department]
        texts = [
            ds.id,
            ds.resource_code,
            ds.title,
            ds.title_en,
            ds.description,
            department.name,
            department.name_en,
            *ds.public.keywords,
        ]
        if any(needle in t.casefold() for t in texts):
            hits.append(SearchHit(ds.id, None, f"{ds.title} / {ds.title_en}"))
        for f in ds.fields:
            if needle in f.name.casefold() or needle in f.description.casefold():
                hits.append(SearchHit(ds.id, f.name, f.description))
    return hits
