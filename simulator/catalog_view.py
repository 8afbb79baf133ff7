"""The catalog as the simulator needs it: dataset id, source, key and field names in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

DEFINITIONS_DIR = Path(__file__).resolve().parent.parent / "catalog" / "definitions"


@dataclass(frozen=True)
class SourceView:
    kind: str
    connection_id: str
    table: str | None
    path: str | None
    encoding: str | None
    sheet: str | None = None  # Excel drops: the data sheet's name


@dataclass(frozen=True)
class DatasetView:
    department: str
    code: str
    source: SourceView
    key: str
    fields: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.department}.{self.code}"

    def file_name(self, ds_nodash: str) -> str:
        assert self.source.path is not None
        return self.source.path.format(ds_nodash=ds_nodash)


def _catalog_datasets() -> list[DatasetView]:
    """Every catalog dataset; through ``catalog.definitions.load_catalog`` when it loads.

    Falls back to reading the YAML directly, so the simulator keeps working while the
    catalog package is being changed.
    """
    try:
        from catalog.definitions import load_catalog

        return [
            DatasetView(
                d.department,
                d.code,
                SourceView(
                    d.source.kind,
                    d.source.connection_id,
                    d.source.table,
                    d.source.path,
                    d.source.encoding,
                    d.source.sheet,
                ),
                d.key[0],
                tuple(f.name for f in d.fields),
            )
            for d in load_catalog().datasets
        ]
    except Exception:  # noqa: BLE001 - any problem there: read the YAML ourselves
        return _from_yaml()


def _from_yaml() -> list[DatasetView]:
    out = []
    for path in sorted(DEFINITIONS_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        dept = data["department"]["code"]
        for d in data["datasets"]:
            s = d["source"]
            out.append(
                DatasetView(
                    dept,
                    d["code"],
                    SourceView(
                        s["kind"],
                        s["connection_id"],
                        s.get("table"),
                        s.get("path"),
                        s.get("encoding"),
                        s.get("sheet"),
                    ),
                    d["key"][0],
                    tuple(f["name"] for f in d["fields"]),
                )
            )
    return out


def catalog_by_id() -> dict[str, DatasetView]:
    return {d.id: d for d in _catalog_datasets()}
