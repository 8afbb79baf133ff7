"""A static page over every dataset's latest quality figures, linking its GX Data Docs.

Written once at the close of a night, which is also when the Data Docs are rendered: the
validation tasks only count, GX records and renders their counts here, one GX import per
night instead of one context and one render per dataset task (docs/decisions/0013).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from catalog.definitions import Catalog, load_catalog
from catalog.errors import impersonal
from catalog.files import new_owner_file, owner_only_dir
from catalog.store import CatalogStore
from etl.quality import Validated, write_data_docs


def write_quality_index(store: CatalogStore, path: Path, catalog: Catalog | None = None) -> Path:
    """Write ``index.html`` (owner-only): one row per dataset, conservation arithmetic and top
    failures; notes pass through the masking function once more, as HTML leaves the raw zone.

    Renders each dataset's Data Docs (where its validation asked for them) first."""
    latest = store.latest_quality()
    catalog = catalog or load_catalog()
    known = {d.id for d in catalog.datasets}
    write_data_docs(
        Validated(catalog.dataset(q.dataset_id), q, Path(q.docs).parent)
        for q in latest
        if q.docs and q.dataset_id in known
    )
    rows = []
    for q in latest:
        top = "<br>".join(f"{escape(k)}: {v:,}" for k, v in q.top_failures(5)) or "—"
        notes = "<br>".join(escape(impersonal(n)) for n in q.schema_notes)
        link = f'<a href="{escape(Path(q.docs).as_uri())}">Data Docs</a>' if q.docs else ""
        rows.append(
            f"<tr><td>{escape(q.dataset_id)}</td><td>{q.ds}</td><td>{q.delivered:,}</td>"
            f"<td>{q.unchanged:,}</td>"
            f"<td>{q.clean:,}</td><td>{q.quarantined:,} ({q.quarantined_share:.2%})</td>"
            f"<td>{q.collapsed:,}</td><td>{q.deleted:,}</td>"
            f"<td>{q.checks}</td><td>{top}</td><td>{notes}</td><td>{link}</td></tr>"
        )
    head = (
        "<tr><th>dataset</th><th>date</th><th>delivered</th><th>unchanged</th><th>clean</th>"
        "<th>quarantined</th><th>collapsed duplicates</th><th>deleted keys</th><th>checks</th>"
        "<th>top failures</th><th>notes</th>"
        "<th></th></tr>"
    )
    owner_only_dir(path.parent)
    new_owner_file(path).write_text(
        "<!doctype html><meta charset='utf-8'><title>yimen-lake quality</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px 8px}"
        "table{border-collapse:collapse}</style>"
        "<h1>yimen-lake: latest validation per dataset</h1>"
        "<p>delivered = unchanged + clean + quarantined + collapsed duplicates, for every "
        "dataset. <i>unchanged</i>: snapshot rows identical to the last good night's, carried "
        "forward clean without validating them again; <i>deleted keys</i>: keys gone from "
        "the snapshot since then.</p>"
        f"<table>{head}{''.join(rows)}</table>",
        encoding="utf-8",
    )
    return path
