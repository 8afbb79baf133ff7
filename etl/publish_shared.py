"""Shared extracts: each consumer department gets exactly its grants, masked by the policy.

For every active grant of a consumer on the night's date, the clean partition of the granted
dataset is streamed, each granted field becomes the columns :func:`masking.policy.field_treatment`
says (clear, masked, generalised, a per-consumer token …), and the result is written as
``shared/<consumer>/<dataset>/dt=<ds>/`` — Parquet with the level, PII kind, operator and key
id in the schema metadata, plus a CSV that Excel opens with Chinese intact. The leak scan runs
over every batch before anything is committed: a finding blocks that partition (it never
appears under ``shared/``), and the distribution log records what was delivered or blocked.

The pure core is :func:`extract_plan` (which columns, from which field, by which operator) and
:func:`masked_batch` (a clean batch in, the consumer's batch out); the rest is the I/O shell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from catalog.definitions import Catalog, DatasetDef, FieldDef
from catalog.errors import PublicationBlocked
from catalog.grants import Distribution, Grant, GrantRegistry
from catalog.store import CatalogStore
from etl.zones import RAW_CLEAN, Lake, clean_type, write_delivery
from masking.keys import MasterKey
from masking.leak_scan import LeakFinding, scan_table
from masking.operators import Context, Token
from masking.policy import Output, Treatment, field_treatment, output_metadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedColumn:
    """One delivered column: the field it comes from and the operator that makes it."""

    field: FieldDef
    output: Output


@dataclass(frozen=True)
class ExtractPlan:
    """What one grant delivers: the policy's answer for every granted field, in order."""

    grant_id: int
    consumer: str
    dataset: DatasetDef
    treatments: list[Treatment]
    columns: list[PlannedColumn]

    @property
    def column_names(self) -> list[str]:
        return [c.output.column for c in self.columns]

    @property
    def token_columns(self) -> list[PlannedColumn]:
        return [c for c in self.columns if isinstance(c.output.operator, Token)]

    def schema(self, key_id: str) -> pa.Schema:
        """The delivered schema; each field says how it was treated (never key material)."""
        return pa.schema(
            [
                pa.field(
                    c.output.column,
                    pa.string() if _is_text(c) else clean_type(c.field),
                    metadata=output_metadata(c.field, c.output, key_id),
                )
                for c in self.columns
            ]
        )


@dataclass
class SharedResult:
    """One grant's delivery for one night (or the reason it was blocked)."""

    grant_id: int
    consumer: str
    dataset_id: str
    ds: date
    rows: int = 0
    path: str | None = None
    blocked: bool = False
    findings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.blocked:
            why = "; ".join(self.findings)
            return f"{self.consumer} ← {self.dataset_id} {self.ds}: BLOCKED ({why})"
        return f"{self.consumer} ← {self.dataset_id} {self.ds}: {self.rows:,} rows"


def extract_plan(grant: Grant, dataset: DatasetDef) -> ExtractPlan:
    """The policy's answer for each field the grant names; nothing else is delivered.

    A field among the grant's ``clear_fields`` is treated as granted (有条件共享 approved:
    conditional fields in clear); any other granted field gets the treatment for consumers
    without that approval (a conditional field masked, generalised or tokenised).
    """
    treatments, columns = [], []
    for f in dataset.fields:
        if f.name not in grant.fields:
            continue
        treatment = field_treatment(dataset, f, grant.consumer, f.name in grant.clear_fields)
        treatments.append(treatment)
        columns += [PlannedColumn(f, o) for o in treatment.outputs]
    return ExtractPlan(grant.id, grant.consumer, dataset, treatments, columns)


def masked_batch(
    clean: pa.Table, plan: ExtractPlan, context: Context, schema: pa.Schema
) -> pa.Table:
    """A clean batch as the consumer receives it (pure: no I/O, the key comes in ``context``)."""
    arrays = [
        c.output.operator.apply(clean.column(c.field.name), context).cast(schema.field(i).type)
        for i, c in enumerate(plan.columns)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def foreign_tokens(
    clean: pa.Table, plan: ExtractPlan, others: dict[str, Context]
) -> dict[str, pa.Array]:
    """Per token column, the tokens other consumers hold for the same values.

    A token column made with the wrong consumer's key would let two departments link their
    extracts; the leak scan looks for these tokens in the output.
    """
    found: dict[str, pa.Array] = {}
    for c in plan.token_columns:
        values = clean.column(c.field.name)
        tokens = [c.output.operator.apply(values, ctx) for ctx in others.values()]
        if tokens:
            found[c.output.column] = pc.unique(pa.chunked_array(tokens).combine_chunks())
    return found


def publish_for_consumer(
    consumer: str,
    ds: date,
    *,
    catalog: Catalog,
    lake: Lake,
    store: CatalogStore,
    run_id: str,
    load_key: Callable[[], MasterKey],
) -> list[SharedResult]:
    """Deliver every active grant of ``consumer`` for ``ds`` (the I/O shell).

    ``load_key`` comes from the DAG/CLI edge and is asked only when there is something to
    deliver: a missing key is then a one-line error saying how to provide it.
    """
    registry = GrantRegistry(store)
    grants = registry.active(ds, consumer)
    if not grants:
        return []
    master_key = load_key()
    context = Context(key=master_key.token_key(consumer), reference_date=ds)
    others = {
        c: Context(key=master_key.token_key(c), reference_date=ds)
        for c in registry.consumers(ds)
        if c != consumer
    }
    results = []
    for grant in grants:
        result = _deliver(grant, ds, catalog, lake, context, others, master_key.key_id)
        registry.record_distribution(
            Distribution(
                run_id=run_id,
                grant_id=grant.id,
                consumer=consumer,
                dataset_id=grant.dataset_id,
                ds=ds,
                path=result.path,
                rows=result.rows,
                fingerprint=None,
                key_id=master_key.key_id,
                delivered=not result.blocked,
                reason="; ".join(result.findings) or None,
            )
        )
        log.info(result.summary())
        results.append(result)
    write_data_dictionary(
        lake, consumer, [extract_plan(g, catalog.dataset(g.dataset_id)) for g in grants], grants
    )
    blocked = [r for r in results if r.blocked]
    if blocked:
        raise PublicationBlocked(
            f"shared extracts for {consumer} {ds}: {len(blocked)} blocked by the leak scan: "
            + "; ".join(r.summary() for r in blocked)
        )
    return results


def _deliver(
    grant: Grant,
    ds: date,
    catalog: Catalog,
    lake: Lake,
    context: Context,
    others: dict[str, Context],
    key_id: str,
) -> SharedResult:
    dataset = catalog.dataset(grant.dataset_id)
    plan = extract_plan(grant, dataset)
    schema = plan.schema(key_id)
    result = SharedResult(grant.id, grant.consumer, dataset.id, ds)
    findings: list[LeakFinding] = []
    offset = 0

    def batches() -> Iterator[pa.Table]:
        nonlocal offset
        for clean in lake.partition_batches(lake.dataset_partition(RAW_CLEAN, dataset, ds)):
            out = masked_batch(clean, plan, context, schema)
            scan = scan_table(
                out,
                expected_columns=plan.column_names,
                exempt_columns=_exempt(plan),
                token_columns=[c.output.column for c in plan.token_columns],
                foreign_tokens=foreign_tokens(clean, plan, others),
            )
            findings.extend(_shifted(f, offset) for f in scan)
            offset += out.num_rows
            yield out

    path = lake.shared_partition(grant.consumer, dataset, ds)
    manifest = write_delivery(
        lake,
        path,
        batches(),
        schema,
        csv_encoding=grant.csv_encoding,
        accept=lambda: not findings,  # asked after the last batch, before the commit
        extra={"grant": grant.id, "key_id": key_id, "dataset": dataset.id},
    )
    where = f"shared/{grant.consumer}/{dataset.id}/dt={ds}"
    if manifest is None:
        result.blocked = True
        result.findings = [f.describe(where) for f in _merged(findings)]
        return result
    result.rows, result.path = manifest.rows, manifest.path
    return result


def write_data_dictionary(
    lake: Lake, consumer: str, plans: list[ExtractPlan], grants: list[Grant]
) -> None:
    """``shared/<consumer>/数据字典.md`` and ``.html``: exactly the fields it receives, and how."""
    from html import escape

    by_id = {g.id: g for g in grants}
    lines = [f"# 数据字典 Data dictionary — {consumer}", ""]
    rows_html = []
    for plan in plans:
        grant = by_id[plan.grant_id]
        lines += [
            f"## {plan.dataset.title} {plan.dataset.title_en} (`{plan.dataset.id}`)",
            "",
            f"授权 Grant #{grant.id}: {grant.purpose}; 依据 legal basis: {grant.legal_basis}; "
            f"{grant.valid_from} – {grant.valid_to or '长期 open-ended'}",
            "",
            "| 列 column | 字段 field | 说明 description | 级别 level | 形式 form |",
            "|---|---|---|---|---|",
        ]
        for t in plan.treatments:
            f = next(x for x in plan.dataset.fields if x.name == t.field)
            for o in t.outputs:
                form = o.operator.describe()
                lines.append(f"| {o.column} | {f.name} | {f.description} | {f.level} | {form} |")
                rows_html.append(
                    "<tr>"
                    + "".join(
                        f"<td>{escape(str(v))}</td>"
                        for v in (plan.dataset.id, o.column, f.description, f.level, form, grant.id)
                    )
                    + "</tr>"
                )
        lines.append("")
    folder = f"{lake.root}/shared/{consumer}"
    lake.fs.create_dir(folder, recursive=True)
    with lake.fs.open_output_stream(f"{folder}/数据字典.md") as out:
        out.write("\n".join(lines).encode("utf-8"))
    head = "".join(f"<th>{h}</th>" for h in ("数据集", "列", "说明", "级别", "形式", "授权"))
    page = (
        f"<!doctype html><meta charset='utf-8'><title>数据字典 {escape(consumer)}</title>"
        f"<h1>数据字典 — {escape(consumer)}</h1><table border=1><tr>{head}</tr>"
        f"{''.join(rows_html)}</table>"
    )
    with lake.fs.open_output_stream(f"{folder}/数据字典.html") as out:
        out.write(page.encode("utf-8"))


def _is_text(c: PlannedColumn) -> bool:
    """Masked, tokenised and generalised values are text; kept ones keep their clean type."""
    from masking.operators import Band, Keep, Round

    return not isinstance(c.output.operator, Keep | Round | Band)


def _exempt(plan: ExtractPlan) -> list[str]:
    """Columns whose legitimate values look like a 15-digit old ID (registration numbers)."""
    return [c.output.column for c in plan.columns if c.field.rule in ("business_reg_no", "tax_no")]


def _shifted(finding: LeakFinding, offset: int) -> LeakFinding:
    first = None if finding.first_row is None else finding.first_row + offset
    return LeakFinding(finding.column, finding.kind, finding.rows, first)


def _merged(findings: list[LeakFinding]) -> list[LeakFinding]:
    """One finding per column and kind across batches (rows added, the first row kept)."""
    merged: dict[tuple[str, str], LeakFinding] = {}
    for f in findings:
        key = (f.column, f.kind)
        if key in merged and f.kind == "ungranted_column":
            continue
        old = merged.get(key)
        if old is None:
            merged[key] = f
        else:
            firsts = [x for x in (old.first_row, f.first_row) if x is not None]
            merged[key] = LeakFinding(
                f.column, f.kind, old.rows + f.rows, min(firsts) if firsts else None
            )
    return list(merged.values())
