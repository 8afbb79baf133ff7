"""Checks on what left the raw zone, and the audited way back from a token to a person.

``verify_shared`` re-runs the leak scan over committed shared partitions (the night runs it
before committing; this is the same scan for people and auditors). ``reidentify_token`` is
the platform team's authorised re-identification: it recomputes the consumer's tokens over
the clean ID columns, returns the matching raw records, and writes who, why, when and which
token to the audit log whether or not anything was found.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog.definitions import load_catalog
from catalog.errors import LakeError
from catalog.grants import AuditEntry, GrantRegistry
from catalog.store import CatalogStore
from etl.publish_shared import extract_plan
from etl.settings import LakeSettings
from etl.zones import RAW_CLEAN, SHARED
from masking.keys import MasterKey
from masking.leak_scan import scan_table
from masking.operators import Context, Token


def verify_shared(settings: LakeSettings, ds: date | None) -> tuple[list[str], int]:
    """Findings (without values) over the shared partitions of ``ds`` (default: latest)."""
    store, lake, catalog = (
        CatalogStore(settings.catalog_url),
        settings.lake(),
        load_catalog(),
    )
    registry = GrantRegistry(store)
    grants = {g.id: g for g in registry.grants()}
    delivered = [d for d in registry.distributions() if d.delivered and d.path]
    if ds is None and delivered:
        ds = max(d.ds for d in delivered)
    findings, scanned = [], 0
    for d in (d for d in delivered if d.ds == ds):
        manifest = lake.read_manifest(d.path)
        if manifest is None:  # replaced by a later rerun of the same date
            continue
        grant = grants[d.grant_id]
        plan = extract_plan(grant, catalog.dataset(grant.dataset_id))
        table = pa.concat_tables(
            pq.read_table(f"{d.path}/{name}", filesystem=lake.fs)
            for name in manifest.files
            if name.endswith(".parquet")
        )
        where = f"{SHARED}/{d.consumer}/{d.dataset_id}/dt={d.ds}"
        tokens = [c.output.column for c in plan.token_columns]
        for f in scan_table(table, expected_columns=plan.column_names, token_columns=tokens):
            findings.append(f.describe(where))
        scanned += 1
    return findings, scanned


def reidentify_token(
    settings: LakeSettings,
    token: str,
    consumer: str,
    reason: str,
    who: str,
    key: MasterKey,
    ds: date | None = None,
) -> list[tuple[str, dict]]:
    """Raw records whose ID gives ``token`` under ``consumer``'s key; audited either way."""
    if not reason.strip():
        raise LakeError("re-identification needs a reason: it is audited")
    store, lake, catalog = (
        CatalogStore(settings.catalog_url),
        settings.lake(),
        load_catalog(),
    )
    context = Context(key=key.token_key(consumer))
    latest: dict[str, date] = {}
    for p in store.partitions(zone=RAW_CLEAN):
        if ds is None or p.ds == ds:
            latest[p.dataset_id] = max(p.ds, latest.get(p.dataset_id, p.ds))
    found: list[tuple[str, dict]] = []
    for dataset_id, night in sorted(latest.items()):
        dataset = catalog.dataset(dataset_id)
        id_fields = [f.name for f in dataset.fields if f.pii == "id_no"]
        if not id_fields:
            continue
        for batch in lake.partition_batches(lake.dataset_partition(RAW_CLEAN, dataset, night)):
            for name in id_fields:
                hit = pc.equal(Token().apply(batch.column(name), context), token)
                rows = batch.filter(pc.fill_null(hit, False))
                keep = [*dataset.key, *(f.name for f in dataset.fields if f.pii)]
                found += [
                    (dataset_id, r) for r in rows.select(list(dict.fromkeys(keep))).to_pylist()
                ]
    GrantRegistry(store).audit(
        AuditEntry(
            who=who,
            action="reidentify",
            consumer=consumer,
            token=token,
            reason=reason,
            found=len(found),
        )
    )
    return found
