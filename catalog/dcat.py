"""The open-data catalogue as DCAT JSON-LD (``public/catalog.jsonld``; DESIGN §7, issue 12).

Only real vocabularies: W3C DCAT (v3 terms, all also valid in v2 but ``dcat:Dataset``'s
field list), DCTERMS, FOAF, SPDX checksums, CSVW for the field-level descriptions of each
table, and the EU Publications Office authority lists for themes and update frequency.
Download URLs are relative to the catalogue file, so the public folder can be copied
anywhere (or served) as it is. :class:`PublicEntry` is what the DCAT file and the portal
page are both built from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "spdx": "http://spdx.org/rdf/terms#",
    "csvw": "http://www.w3.org/ns/csvw#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
LICENCE = "https://creativecommons.org/licenses/by/4.0/"
THEME_BASE = "http://publications.europa.eu/resource/authority/data-theme/"
FREQUENCY = {
    "daily": "http://publications.europa.eu/resource/authority/frequency/DAILY",
    "weekly": "http://publications.europa.eu/resource/authority/frequency/WEEKLY",
    "monthly": "http://publications.europa.eu/resource/authority/frequency/MONTHLY",
}
MEDIA_TYPE_BASE = "https://www.iana.org/assignments/media-types/"
PLATFORM = ("江门市大数据平台 (邑门式)", "Jiangmen big-data platform (Yimen)")


@dataclass(frozen=True)
class FieldEntry:
    name: str
    description: str
    description_en: str
    datatype: str  # the Parquet/Arrow type, e.g. string, date32[day], int64


@dataclass(frozen=True)
class PublicEntry:
    """One published dataset or statistics table as of its latest publication."""

    name: str  # public/<name>/dt=…: a dataset id or stats/<table>
    kind: str  # microdata | statistics
    title: str
    title_en: str
    description: str
    description_en: str
    publisher: tuple[str, str]  # (zh, en)
    themes: list[str]
    keywords: list[str]
    update_cycle: str
    ds: date
    modified: str  # ISO timestamp of the partition's manifest
    temporal: list[str] | None
    rows: int
    fields: list[FieldEntry]
    distributions: list[dict]  # file, media_type, bytes, sha256, url (relative to public/)
    lineage: list[str] = field(default_factory=list)  # one line per input, for people
    kanon: dict | None = None
    data: list[dict] | None = None  # the rows of a statistics table (charts)

    @property
    def anchor(self) -> str:
        return self.name.replace("/", "-").replace(".", "-")


def _text(zh: str, en: str) -> list[dict]:
    return [{"@value": zh, "@language": "zh"}, {"@value": en, "@language": "en"}]


def _typed(value: object, datatype: str) -> dict:
    return {"@value": str(value), "@type": f"xsd:{datatype}"}


def _distribution(entry: PublicEntry, d: dict) -> dict:
    fmt = "Parquet" if d["file"].endswith(".parquet") else "CSV"
    return {
        "@id": f"#{entry.anchor}/{d['file']}",
        "@type": "dcat:Distribution",
        "dct:title": _text(f"{entry.title} ({fmt})", f"{entry.title_en} ({fmt})"),
        "dcat:downloadURL": {"@id": d["url"]},
        "dcat:accessURL": {"@id": d["url"]},
        "dcat:mediaType": {"@id": MEDIA_TYPE_BASE + d["media_type"]},
        "dct:format": fmt,
        "dcat:byteSize": _typed(d["bytes"], "nonNegativeInteger"),
        "spdx:checksum": {
            "@type": "spdx:Checksum",
            "spdx:algorithm": {"@id": "spdx:checksumAlgorithm_sha256"},
            "spdx:checksumValue": _typed(d["sha256"], "hexBinary"),
        },
        "dct:license": {"@id": LICENCE},
        "dct:modified": _typed(entry.ds.isoformat(), "date"),
        "csvw:tableSchema": {
            "@type": "csvw:Schema",
            "csvw:column": [
                {
                    "@type": "csvw:Column",
                    "csvw:name": f.name,
                    "csvw:title": f.name,
                    "dct:description": _text(f.description, f.description_en),
                    "csvw:datatype": f.datatype,
                }
                for f in entry.fields
            ],
        },
    }


def _dataset(entry: PublicEntry) -> dict:
    node = {
        "@id": f"#{entry.anchor}",
        "@type": "dcat:Dataset",
        "dct:identifier": entry.name,
        "dct:title": _text(entry.title, entry.title_en),
        "dct:description": _text(entry.description, entry.description_en),
        "dct:publisher": {
            "@type": "foaf:Organization",
            "foaf:name": _text(*entry.publisher),
        },
        "dct:license": {"@id": LICENCE},
        "dcat:theme": [{"@id": THEME_BASE + t} for t in entry.themes],
        "dcat:keyword": [{"@value": w, "@language": _language(w)} for w in entry.keywords],
        "dct:accrualPeriodicity": {"@id": FREQUENCY[entry.update_cycle]},
        "dct:modified": _typed(entry.ds.isoformat(), "date"),
        "dcat:landingPage": {"@id": f"index.html#{entry.anchor}"},
        "dct:type": entry.kind,
        "dcat:distribution": [_distribution(entry, d) for d in entry.distributions],
    }
    if entry.temporal:
        node["dct:temporal"] = {
            "@type": "dct:PeriodOfTime",
            "dcat:startDate": _typed(entry.temporal[0], "date"),
            "dcat:endDate": _typed(entry.temporal[1], "date"),
        }
    if entry.lineage:
        node["dct:provenance"] = {
            "@type": "dct:ProvenanceStatement",
            "rdfs:label": "; ".join(entry.lineage),
        }
    return node


def _language(word: str) -> str:
    return "en" if word.isascii() else "zh"


def dcat_catalogue(entries: list[PublicEntry], ds: date) -> bytes:
    """The whole catalogue as UTF-8 JSON-LD."""
    doc = {
        "@context": CONTEXT,
        "@id": "#catalog",
        "@type": "dcat:Catalog",
        "dct:title": _text("江门市政府开放数据目录", "Jiangmen open government data catalogue"),
        "dct:description": _text(
            "邑门式数据湖每晚发布的去标识化微观数据与数字邑门式统计。",
            "De-identified microdata and the Yimen statistics, published every night by the "
            "city's data lake.",
        ),
        "dct:publisher": {"@type": "foaf:Organization", "foaf:name": _text(*PLATFORM)},
        "dct:license": {"@id": LICENCE},
        "dct:language": {"@id": "http://id.loc.gov/vocabulary/iso639-1/zh"},
        "dct:modified": _typed(ds.isoformat(), "date"),
        "foaf:homepage": {"@id": "index.html"},
        "dcat:dataset": [_dataset(e) for e in entries],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()
