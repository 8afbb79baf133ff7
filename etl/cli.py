"""``lake``: the command line for people. It wires the same functions the DAGs call.

Errors from the lake are printed as one line naming the file/dataset/field; ``--debug``
shows the traceback too.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
import time
from datetime import date
from pathlib import Path

import click

from catalog.errors import LakeError, one_line, shown_error, shown_url
from catalog.files import OWNER_ONLY_UMASK
from etl.settings import LakeSettings


class _LakeGroup(click.Group):
    """Turns a LakeError into ``error: <one line>`` (exit 1), anything else unexpected into
    one line too (exit 2); ``--debug`` shows the traceback instead."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LakeError as exc:
            if ctx.params.get("debug"):
                raise
            click.secho(f"error: {shown_error(exc)}", fg="red", err=True)
            sys.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug or an environment problem: still one line
            if ctx.params.get("debug"):
                raise
            click.secho(
                f"error: unexpected {one_line(exc)} (--debug for the traceback)", fg="red", err=True
            )
            sys.exit(2)


@click.group(cls=_LakeGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """yimen-lake: the city's nightly data lake (simulate, run, inspect)."""
    os.umask(OWNER_ONLY_UMASK)  # logs, the catalog database, pages, spill files: owner-only
    # When the process exits, what the command loaded (Airflow, Great Expectations,
    # pandas: millions of objects) is left out of the collections Python runs while it
    # shuts down: 2-3 s after `lake run`'s last line, to free memory the kernel takes back
    # anyway. At exit only (atexit, after Airflow's own handlers): a process that goes on
    # (a test calling the CLI) keeps collecting.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(message)s"
    )
    ctx.obj = LakeSettings.from_env()


def _parse_date(_ctx, _param, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from exc


def date_option(default: str):
    return click.option(
        "--date",
        "ds",
        callback=_parse_date,
        help=f"Partition date YYYY-MM-DD (default: {default}).",
    )


@main.command()
@click.option(
    "--scale",
    type=float,
    default=0.005,
    show_default=True,
    help="Fraction of full scale (1.0 ≈ 8 million source records).",
)
@click.option("--seed", type=int, default=20170223, show_default=True)
@date_option("yesterday in Shanghai")
@click.option("--advance", is_flag=True, help="Advance the existing simulation by one day.")
@click.pass_obj
def simulate(
    settings: LakeSettings, scale: float, seed: int, ds: date | None, advance: bool
) -> None:
    """Build (or advance by a day) the simulated department systems under var/departments/."""
    summary = _simulate(settings, scale, seed, ds, advance)
    click.echo(f"departments simulated as of {summary.as_of} in {summary.out_dir}")
    for dataset_id, rows in summary.rows.items():
        click.echo(f"  {dataset_id:40s} {rows:>12,} rows")


def _simulate(settings: LakeSettings, scale: float, seed: int, ds: date | None, advance: bool):
    from etl.airflow_runner import default_demo_date

    try:  # deferred: a production install has no simulator (pip install 'yimen-lake[simulator]')
        import simulator
    except ImportError as exc:
        raise LakeError(
            f"the department simulator is not installed ({exc.name} missing); "
            "install it with: pip install 'yimen-lake[simulator]'"
        ) from exc

    progress = lambda msg: click.echo(f"  … {msg}", err=True)  # noqa: E731
    if advance:
        return simulator.advance_day(settings.departments_dir, progress=progress)
    return simulator.build_departments(
        settings.departments_dir,
        scale=scale,
        seed=seed,
        as_of=ds or default_demo_date(),
        ground_truth_dir=settings.ground_truth_dir,
        progress=progress,
    )


@main.command()
@date_option("yesterday in Shanghai")
@click.option(
    "--sequential",
    "mode",
    flag_value="sequential",
    help="Run the tasks one after the other in this process.",
)
@click.option(
    "--concurrent",
    "mode",
    flag_value="concurrent",
    help="Hand the tasks to the LocalExecutor: independent tasks at once.",
)
@click.pass_obj
def run(settings: LakeSettings, ds: date | None, mode: str | None) -> None:
    """Run one night for --date through Airflow (dag.test()).

    By default concurrently (the LocalExecutor), unless the latest night delivered fewer
    than 200,000 rows: a night that small runs faster in this process.
    """
    from etl.airflow_runner import apply_airflow_environment, default_demo_date, runs_concurrently

    apply_airflow_environment(settings)  # before the store is opened (owner-only files)
    parallel = mode == "concurrent" if mode else runs_concurrently(settings)
    _run_and_report(settings, ds or default_demo_date(), parallel=parallel)


def _run_and_report(settings: LakeSettings, ds: date, parallel: bool = True) -> None:
    import os

    from etl.airflow_runner import apply_airflow_environment, cpu_seconds, run_night

    apply_airflow_environment(settings)
    os.environ.update(_key_environment(settings))  # the night's shared step reads it at its edge
    log_file = settings.var / "airflow" / "logs" / f"lake-run-{ds}.log"
    how = "LocalExecutor" if parallel else "in-process"
    click.echo(f"running night {ds} through Airflow (dag.test, {how}); Airflow's log: {log_file}")
    started, cpu = time.monotonic(), cpu_seconds()
    result = run_night(settings, ds, log_file=log_file, show_progress=True, parallel=parallel)
    elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu
    click.echo(f"\nnight {ds}:")
    _print_night(settings, ds, result.run_id)
    if result.failed_tasks:
        raise LakeError(
            f"night {ds} {result.state} after {elapsed:.0f}s; failed tasks: "
            + ", ".join(result.failed_tasks)
        )
    click.echo(
        f"night {ds}: {result.state} in {elapsed:.0f}s, CPU {cpu:.0f}s (run {result.run_id})"
    )


def _print_night(settings: LakeSettings, ds: date, run_id: str) -> None:
    """One line per dataset: delivered = unchanged + clean + quarantined + collapsed, and the
    keys deleted from a snapshot since the last night; from this run only.

    A dataset that failed in this run is marked with the step that failed; figures an
    earlier run of the same date left in the store are never shown as this run's.
    """
    from catalog.store import CatalogStore
    from etl.zones import RAW_SOURCES

    store = CatalogStore(settings.catalog_url)
    extracted = [p for p in store.partitions(ds=ds, zone=RAW_SOURCES) if p.run_id == run_id]
    raw = {p.dataset_id: p.rows for p in extracted}
    quality = {q.dataset_id: q for q in store.quality(ds) if q.run_id == run_id}
    failed: dict[str, list[str]] = {}
    for error in store.errors(run_id):  # steps are "extract <dataset>", "validate <dataset>"
        step, _, dataset_id = error.step.partition(" ")
        if "." in dataset_id:
            failed.setdefault(dataset_id, []).append(step)
    click.echo(
        f"  {'dataset':36s} {'delivered':>10s} {'unchanged':>10s} {'clean':>10s} "
        f"{'quarantined':>12s} {'collapsed':>10s} {'deleted':>8s}"
    )
    for dataset_id in sorted(raw.keys() | quality.keys() | failed.keys()):
        q = quality.get(dataset_id)
        delivered = q.delivered if q else raw.get(dataset_id)
        numbers = [delivered]
        numbers += (
            [q.unchanged, q.clean, q.quarantined, q.collapsed, q.deleted] if q else [None] * 5
        )
        shown = [f"{v:,}" if v is not None else "-" for v in numbers]
        mark = f"  FAILED ({', '.join(failed[dataset_id])})" if dataset_id in failed else ""
        click.echo(
            f"  {dataset_id:36s} {shown[0]:>10s} {shown[1]:>10s} {shown[2]:>10s} "
            f"{shown[3]:>12s} {shown[4]:>10s} {shown[5]:>8s}{mark}"
        )
    lake = settings.lake()
    for part in extracted:  # rows with no watermark: read every night (decision 0009)
        manifest = lake.read_manifest(part.path)
        nulls = manifest.extra.get("null_watermark_rows", 0) if manifest else 0
        if nulls:
            click.echo(
                f"  note: {part.dataset_id}: {nulls:,} rows with no updated_at, delivered "
                "every night until the source fills it in"
            )
    unified = store.unification(ds)
    if unified:
        click.echo(f"  {unified.summary()}")


def _print_snapshots(settings: LakeSettings, ds: date) -> None:
    """The night ``ds`` as committed: one line per raw table, from the snapshots it names."""
    lake = settings.lake()
    records = lake.store.snapshots(ds=ds)
    if not records:
        raise LakeError(f"no night {ds} in the lake: `lake status` lists the nights run")
    click.echo(f"night {ds} as committed (Iceberg snapshots named by the catalog store):")
    click.echo(f"  {'zone':15s} {'table':36s} {'rows':>10s} {'snapshot':>20s}  run / replaced")
    for r in records:
        path = lake.partition_path(r.zone, *r.table.split("/"), ds=ds)
        rows = lake.read_partition(path).num_rows  # read back through the named snapshot
        replaced = ""
        if r.previous_snapshot_id:  # a rerun: what the date held before, while it is kept
            try:
                before = f"{lake.read_snapshot(path, r.previous_snapshot_id).num_rows:,} rows"
            except LakeError:
                before = "expired"
            replaced = f", replaced {r.previous_snapshot_id} ({before})"
        click.echo(
            f"  {r.zone:15s} {r.table:36s} {rows:>10,} {r.snapshot_id or '-':>20}  "
            f"{r.run_id} at {r.committed_at:%Y-%m-%d %H:%M}{replaced}"
        )


@main.command()
@click.option("--from", "start", required=True, callback=_parse_date, help="First date.")
@click.option("--to", "end", required=True, callback=_parse_date, help="Last date (included).")
@click.pass_obj
def backfill(settings: LakeSettings, start: date, end: date) -> None:
    """Run the nights START..END one after another in-process (no scheduler needed).

    With a running scheduler, `lake airflow backfill create --dag-id yimen_nightly
    --from-date START --to-date ENDT02:00` does the same through Airflow.
    """
    from datetime import timedelta

    if end < start:
        raise click.BadParameter("--to is before --from")
    failed = []
    for offset in range((end - start).days + 1):
        ds = start + timedelta(days=offset)
        try:
            _run_and_report(settings, ds)
        except LakeError as exc:
            click.secho(f"error: {shown_error(exc)}", fg="red", err=True)
            failed.append(ds.isoformat())
    if failed:
        raise LakeError(f"backfill finished; failed nights: {', '.join(failed)}")


@main.command()
@click.option("--scale", type=float, default=0.005, show_default=True)
@date_option("yesterday in Shanghai")
@click.pass_obj
def demo(settings: LakeSettings, scale: float, ds: date | None) -> None:
    """Simulate the departments, run one night through Airflow, print where to look.

    A demo starts from an empty lake: it removes var/lake, var/quality and the SQLite
    catalog under var/ (the departments are simulated afresh, so older watermarks would
    not fit them). It refuses when YIMEN_LAKE_ROOT or YIMEN_CATALOG_URL point elsewhere.
    """
    _reset_demo_lake(settings)
    summary = _simulate(settings, scale, 20170223, ds, advance=False)
    click.echo(f"simulated {sum(summary.rows.values()):,} source records as of {summary.as_of}")
    _seed_demo_grants(settings, summary.as_of)
    # 40k records: every task in this process, one after the other, is faster than the
    # executor's process per task (forks, per-process warm-up); `lake run` uses the
    # executor, where nights are large enough to use both cores (decision 0015)
    _run_and_report(settings, summary.as_of, parallel=False)
    click.echo("\nmaintenance (snapshots past retention, orphan files):")
    _maintain(settings, ORPHAN_AGE_HOURS)
    click.echo(
        "\nwhere to look:\n"
        f"  lake:        {settings.lake_root}/raw/{{sources,clean,quarantine}}/<dept>/<dataset>/"
        f"dt={summary.as_of}/\n"
        f"  unified:     {settings.lake_root}/raw/unified/"
        f"{{person,enterprise,person_xref,enterprise_xref,service_case}}/dt={summary.as_of}/\n"
        f"  quality:     {settings.var / 'quality' / 'index.html'} (figures per dataset, links to "
        "the Great Expectations Data Docs)\n"
        f"  catalog db:  {shown_url(settings.catalog_url)}\n"
        f"  departments: {settings.departments_dir} (simulated systems, connections.json)\n"
        f"  shared:      {settings.lake_root}/shared/<consumer>/<dataset>/dt={summary.as_of}/ "
        "(masked extracts per grant: `lake grant list`, `lake verify`)\n"
        f"  open data:   {settings.lake_root}/public/index.html (portal page; open it in a "
        "browser, no server needed), catalog.jsonld (DCAT)\n"
        "  next:        `lake status`, `lake score`, "
        '`lake sql "SELECT count(*) FROM clean.gongan_population"`, `lake lineage '
        f"public/xingzheng.service_case/dt={summary.as_of}`, `make airflow` for the UI"
    )


DEMO_KEY_FILE = "masking.key"


def _seed_demo_grants(settings: LakeSettings, ds: date) -> None:
    """A local masking key (owner-only) and the demo's grants, realistic ones."""
    from catalog.grants import GrantRequest
    from masking.keys import create_key_file

    key_file = settings.var / DEMO_KEY_FILE
    if not key_file.exists():
        create_key_file(key_file)
    registry, cat = _grants(settings), _catalog()
    for request in DEMO_GRANTS:
        registry.add(GrantRequest(valid_from=ds, **request), cat, by="lake demo")
    click.echo(f"seeded {len(DEMO_GRANTS)} grants; masking key file {key_file} (owner-only)")


DEMO_GRANTS = [
    {
        "consumer": "dishui",
        "dataset_id": "gongan.population",
        "fields": ["person_no", "id_no", "name", "sex", "birth_date", "address", "status"],
        "clear_fields": ["name", "address"],
        "purpose": "个人所得税征管：核实纳税人身份与户籍地址 (tax collection)",
        "legal_basis": "《中华人民共和国税收征收管理法》第五条、第六条",
    },
    {
        "consumer": "renshe",
        "dataset_id": "gongshang.enterprise_registration",
        "fields": ["uscc", "name", "ent_type", "legal_rep_name", "legal_rep_id_no", "status"],
        "purpose": "社会保险登记：核对参保单位登记状态 (employer registration)",
        "legal_basis": "《社会保险法》第五十七条",
    },
    {
        "consumer": "xingzheng",
        "dataset_id": "renshe.insured_person",
        "fields": ["id_no", "name", "insurance_type", "status", "phone"],
        "purpose": "办件核验：申请人参保状态 (service-case checks)",
        "legal_basis": "《江门市政务信息资源共享管理办法》",
        "csv_encoding": "gb18030",
    },
]


def _reset_demo_lake(settings: LakeSettings) -> None:
    """Empty the demo's own lake and catalog; never touch a lake configured elsewhere."""
    import shutil

    from sqlalchemy.engine import make_url

    demo = LakeSettings.under(settings.home)
    if (settings.lake_root, settings.catalog_url) != (demo.lake_root, demo.catalog_url):
        raise LakeError(
            "lake demo starts from an empty lake and only resets the one under var/; "
            "unset YIMEN_LAKE_ROOT / YIMEN_CATALOG_URL (or set YIMEN_HOME) to run it"
        )
    shutil.rmtree(settings.lake_root, ignore_errors=True)
    shutil.rmtree(settings.var / "quality", ignore_errors=True)
    Path(make_url(settings.catalog_url).database).unlink(missing_ok=True)


@main.group()
def catalog() -> None:
    """Inspect the dataset catalog (catalog/definitions/*.yaml)."""


@catalog.command("list")
def catalog_list() -> None:
    """One line per dataset: id, source kind, load mode, field count, title."""
    from catalog.definitions import load_catalog

    for ds in load_catalog().datasets:
        click.echo(
            f"{ds.id:36s} {ds.source.kind:6s} {ds.source.load:12s} "
            f"{len(ds.fields):3d} fields  {ds.title} / {ds.title_en}"
        )


@catalog.command("show")
@click.argument("dataset_id")
@click.option(
    "--as",
    "consumer",
    help="A consumer department: what it receives of each field, from its active grants.",
)
@click.pass_obj
def catalog_show(settings: LakeSettings, dataset_id: str, consumer: str | None) -> None:
    """Fields of one dataset with type, rule, openness level and PII kind."""
    from catalog.definitions import load_catalog

    ds = load_catalog().dataset(dataset_id)
    if consumer:
        _show_as(settings, ds, consumer)
        return
    src = ds.source
    where = src.table if src.kind == "sql" else src.path
    click.echo(f"{ds.id}  [{ds.resource_code}]  {ds.title} / {ds.title_en}")
    click.echo(f"  {ds.description}")
    click.echo(
        f"  source: {src.kind} via connection '{src.connection_id}' ({where}), "
        f"{src.load}"
        + (f", encoding {src.encoding}" if src.encoding else "")
        + (f", sheet '{src.sheet}'" if src.sheet else "")
        + (", control file " + (src.control_file or "required") if src.kind != "sql" else "")
    )
    if src.load == "snapshot":
        click.echo(f"  volume check: may shrink by at most {ds.shrink_limit:.0%} a night")
    click.echo(f"  key: {', '.join(ds.key)}   share: {ds.share_type}   open: {ds.open_type}")
    click.echo(f"  {'field':22s} {'type':9s} {'req':4s} {'rule':16s} {'level':12s} {'pii':11s} qi")
    for f in ds.fields:
        click.echo(
            f"  {f.name:22s} {f.type:9s} {'yes' if f.required else '':4s} {f.rule or '':16s} "
            f"{f.level:12s} {f.pii or '':11s} {'yes' if f.quasi_identifier else ''}"
        )


def _show_as(settings: LakeSettings, ds, consumer: str) -> None:
    """Field by field, what ``consumer`` receives of ``ds`` tonight (masking.policy decides)."""
    from catalog.definitions import load_catalog
    from catalog.grants import GrantRegistry
    from catalog.store import CatalogStore
    from masking.policy import EXAMPLES, field_treatment

    if consumer not in load_catalog().departments:
        raise LakeError(f"unknown consumer department '{consumer}'")
    grants = [
        g
        for g in GrantRegistry(CatalogStore(settings.catalog_url)).active(date.today(), consumer)
        if g.dataset_id == ds.id
    ]
    granted = {f for g in grants for f in g.fields}
    clear = {f for g in grants for f in g.clear_fields}
    which = ", ".join(f"#{g.id}" for g in grants) or "none: nothing is delivered"
    click.echo(f"{ds.id} as received by {consumer} (active grants: {which})")
    for f in ds.fields:
        if f.name not in granted:
            click.echo(f"  {f.name}: not granted, not delivered")
            continue
        treatment = field_treatment(ds, f, consumer, f.name in clear)
        click.echo(f"  {treatment.describe(EXAMPLES.get(f.pii or ''))}")


@catalog.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
def catalog_check(directory: Path | None) -> None:
    """Load and check the definitions; list every problem with file, dataset and field."""
    from catalog.definitions import load_catalog

    cat = load_catalog(directory)
    click.echo(f"catalog ok: {len(cat.departments)} departments, {len(cat.datasets)} datasets")


@main.group()
def db() -> None:
    """The catalog store's schema (Alembic migrations in catalog/migrations/)."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(settings: LakeSettings) -> None:
    """Apply the schema migrations this code needs to the catalog store."""
    from sqlalchemy import create_engine

    from catalog.schema import current_revision, head_revision, upgrade

    engine = create_engine(settings.catalog_url)
    before = current_revision(engine)
    if before is None and _has_tables(engine):
        raise LakeError(
            f"catalog store {shown_url(settings.catalog_url)} was created before schema "
            "migrations; rebuild it (`lake demo`, or a fresh store then `lake run`)"
        )
    upgrade(engine)
    click.echo(
        f"catalog store {shown_url(settings.catalog_url)}: {before or 'empty'} → "
        f"at revision {head_revision()}"
    )


def _has_tables(engine) -> bool:
    from sqlalchemy import inspect

    from catalog.schema import target_metadata

    return bool(set(inspect(engine).get_table_names()) & set(target_metadata().tables))


@main.group()
def grant() -> None:
    """Grants: which consumer department receives which fields of which dataset."""


@grant.command("add")
@click.option("--consumer", required=True, help="Consumer department code, e.g. dishui.")
@click.option("--dataset", "dataset_id", required=True, help="Dataset id, e.g. gongan.population.")
@click.option("--fields", required=True, help="Comma-separated fields to deliver.")
@click.option("--clear", default="", help="Fields approved in clear (conditional level).")
@click.option("--purpose", required=True)
@click.option("--basis", "legal_basis", required=True, help="The legal basis of the grant.")
@click.option("--from", "valid_from", callback=_parse_date, help="First day (default: today).")
@click.option("--to", "valid_to", callback=_parse_date, help="Last day (default: open-ended).")
@click.option("--csv-encoding", default="utf-8-sig", show_default=True, help="or gb18030")
@click.pass_obj
def grant_add(settings: LakeSettings, **options) -> None:
    """Record a grant (checked against the catalog)."""
    from catalog.grants import GrantRequest

    fields = [f.strip() for f in options.pop("fields").split(",") if f.strip()]
    clear = [f.strip() for f in options.pop("clear").split(",") if f.strip()]
    options["valid_from"] = options["valid_from"] or date.today()
    added = _grants(settings).add(
        GrantRequest(fields=fields, clear_fields=clear, **options), _catalog(), by=_who()
    )
    click.echo(f"granted {added.describe()}")


@grant.command("list")
@click.option("--consumer", help="Only this consumer's grants.")
@click.pass_obj
def grant_list(settings: LakeSettings, consumer: str | None) -> None:
    """Every grant, active and revoked."""
    grants = _grants(settings).grants(consumer)
    for g in grants:
        click.echo(g.describe())
    if not grants:
        click.echo("no grants yet: `lake grant add --help`")


@grant.command("revoke")
@click.argument("grant_id", type=int)
@click.option("--reason", required=True)
@click.pass_obj
def grant_revoke(settings: LakeSettings, grant_id: int, reason: str) -> None:
    """Revoke a grant: nothing more is delivered under it from the next night on."""
    revoked = _grants(settings).revoke(grant_id, _who(), reason)
    click.echo(f"revoked {revoked.describe()}")


@main.command()
@date_option("the latest night")
@click.pass_obj
def verify(settings: LakeSettings, ds: date | None) -> None:
    """Leak scan over the shared and public zones: IDs, mobiles, ungranted columns (never
    prints values)."""
    from catalog.definitions import load_catalog
    from catalog.store import CatalogStore
    from etl.publish_public import verify_public
    from etl.verify import verify_shared

    findings, scanned = verify_shared(settings, ds)
    public, public_scanned = verify_public(
        load_catalog(), settings.lake(), CatalogStore(settings.catalog_url), ds
    )
    for line in findings + public:
        click.secho(f"  {line}", fg="red")
    click.echo(
        f"leak scan: {scanned} shared and {public_scanned} public partition(s) scanned, "
        f"{len(findings) + len(public)} finding(s)"
    )
    if findings or public:
        zones = [z for z, f in (("shared", findings), ("public", public)) if f]
        raise LakeError(
            f"leak scan found {len(findings) + len(public)} problem(s) in the "
            f"{' and '.join(zones)} zone(s)"
        )


@main.command()
@click.argument("token")
@click.option("--consumer", required=True, help="The department whose extract holds the token.")
@click.option("--reason", default="", help="Why (required; written to the audit log).")
@click.option("--date", "ds", callback=_parse_date, help="Clean partition to search (latest).")
@click.pass_obj
def reidentify(settings: LakeSettings, token: str, consumer: str, reason: str, ds) -> None:
    """Platform team only: map a person token back to raw records; audited."""
    from etl.verify import reidentify_token
    from masking.keys import MasterKey

    if not reason.strip():
        raise LakeError("reidentify needs --reason: every re-identification is audited")
    key = MasterKey.from_env(_key_environment(settings))
    records = reidentify_token(settings, token, consumer, reason, _who(), key, ds)
    for dataset_id, row in records:
        click.echo(f"{dataset_id}: " + ", ".join(f"{k}={v}" for k, v in row.items()))
    click.echo(f"{len(records)} record(s); recorded in the audit log")


@main.command()
@click.pass_obj
def audit(settings: LakeSettings) -> None:
    """The re-identification audit log: who, why, when, which token."""
    for e in _grants(settings).audit_log():
        click.echo(
            f"{e.at:%Y-%m-%d %H:%M:%S}  {e.who:12s} {e.action:11s} {e.consumer:10s} "
            f"{e.token}  {e.found} record(s)  reason: {e.reason}"
        )


def _grants(settings: LakeSettings):
    from catalog.grants import GrantRegistry
    from catalog.store import CatalogStore

    return GrantRegistry(CatalogStore(settings.catalog_url))


def _catalog():
    from catalog.definitions import load_catalog

    return load_catalog()


def _who() -> str:
    import getpass

    return getpass.getuser()


def _key_environment(settings: LakeSettings) -> dict[str, str]:
    """The environment the masking key is read from: the demo's key file if none is set."""
    import os

    from masking.keys import ENV_KEY, ENV_KEY_FILE

    env = dict(os.environ)
    demo_key = settings.var / DEMO_KEY_FILE
    if not env.get(ENV_KEY) and not env.get(ENV_KEY_FILE) and demo_key.exists():
        env[ENV_KEY_FILE] = str(demo_key)
    return env


@catalog.command("search")
@click.argument("word")
def catalog_search(word: str) -> None:
    """Datasets and fields whose names or descriptions hold WORD (Chinese or English)."""
    from catalog.definitions import load_catalog
    from catalog.search import search_catalog

    hits = search_catalog(load_catalog(), word)
    if not hits:
        raise LakeError(f"catalog search: nothing matches '{word}'")
    for hit in hits:
        where = f"{hit.dataset_id}.{hit.field}" if hit.field else hit.dataset_id
        click.echo(f"{where:48s} {hit.text}")


@main.command()
@click.argument("path")
@click.pass_obj
def lineage(settings: LakeSettings, path: str) -> None:
    """Where the partition at PATH came from (down to the source deliveries) and where it went.

    PATH is a partition folder (or a file in it), absolute or relative to the lake root,
    e.g. public/xingzheng.service_case/dt=2026-11-28.
    """
    from catalog.lineage import lineage as lineage_of
    from catalog.lineage import lineage_lines
    from catalog.store import CatalogStore
    from etl.zones import RAW_SOURCES

    lake = settings.lake()
    full = _partition_folder(lake.root, path)
    came_from, went_to = lineage_of(CatalogStore(settings.catalog_url), full)

    def shown(p: str) -> str:
        return p.removeprefix(lake.root + "/")

    def delivery(p: str) -> str:
        if f"/{RAW_SOURCES}/" not in p:
            return ""
        manifest = lake.read_manifest(p)
        source = manifest.extra.get("source") if manifest else None
        return f"delivered from {source}" if source else ""

    click.echo("came from:")
    for line in lineage_lines(came_from, shown=shown, detail=delivery, depth=1):
        click.echo(line)
    click.echo("went to:")
    if not went_to.links:
        click.echo("  (nothing yet)")
    for link in went_to.links:
        for line in lineage_lines(link, shown=shown, depth=1):
            click.echo(line)


def _partition_folder(root: str, path: str) -> str:
    """``<root>/<zone…>/dt=YYYY-MM-DD`` from a folder or file path, absolute or relative."""
    import os
    import re

    full = path if path.startswith(root) else f"{root}/{path.lstrip('./')}"
    match = re.match(r"^(.*?/dt=\d{4}-\d{2}-\d{2})(/.*)?$", os.path.normpath(full))
    return match.group(1) if match else os.path.normpath(full)


@main.command()
@date_option("the latest night")
@click.pass_obj
def publish(settings: LakeSettings, ds: date | None) -> None:
    """Publish the open data for --date from the clean zone, outside Airflow (as the night's
    publish_public step does): public/<dataset>/dt=…, statistics, catalog.jsonld, index.html."""
    from catalog.store import CatalogStore
    from etl.nightly import Night, publish_public

    if ds is None:
        runs = CatalogStore(settings.catalog_url).runs(limit=1)
        if not runs:
            raise LakeError("no night has run yet: try `lake demo`")
        ds = runs[0].ds
    night = Night.open(ds, f"publish-{ds}", settings)
    summary = publish_public(night)
    for name, report in summary["published"].items():
        figures = (
            f"k={report['achieved_k']}, {report['suppressed_rows']:,} suppressed, "
            f"highest risk {report['highest_risk']:.3f}"
            if "achieved_k" in report
            else f"{report['rows']:,} rows"
        )
        click.echo(f"  public  {name:44s} {figures}")
    click.echo(f"portal: {settings.lake_root}/public/index.html")


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def airflow(settings: LakeSettings, args: tuple[str, ...]) -> None:
    """Run an `airflow` command with this lake's config (e.g. `lake airflow standalone`).

    The metadata DB is migrated and the source pool created first; connections come from
    var/departments/connections.json. Examples: `lake airflow dags list`, `lake airflow
    backfill create --dag-id yimen_nightly --from-date 2026-11-01 --to-date 2026-11-03T02:00`
    (the nights of 1–3 November: runs are at 02:00 Shanghai).
    """
    import os

    from etl.airflow_runner import apply_airflow_environment, ensure_airflow_ready

    apply_airflow_environment(settings)
    ensure_airflow_ready(settings)
    # `airflow standalone` starts its components as `airflow …` from PATH: this venv's
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.execvp(sys.executable, [sys.executable, "-m", "airflow", *args])


ORPHAN_AGE_HOURS = 6.0


@main.command()
@click.argument("dataset_id")
@click.option("--date", "ds", required=True, callback=_parse_date, help="The night YYYY-MM-DD.")
@click.option("--reason", required=True, help="Why the smaller delivery is real (recorded).")
@click.pass_obj
def accept(settings: LakeSettings, dataset_id: str, ds: date, reason: str) -> None:
    """Accept once that DATASET's delivery of --date really shrank (or is really empty).

    The volume check then lets that night's extraction through; who, when and why are
    recorded in the catalog store. Run the night again afterwards (`lake run --date`).
    """
    import getpass

    from catalog.definitions import load_catalog
    from catalog.store import CatalogStore

    dataset = load_catalog().dataset(dataset_id)
    if not reason.strip():
        raise click.BadParameter("say why the smaller delivery is real", param_hint="--reason")
    store = CatalogStore(settings.catalog_url)
    who = getpass.getuser()
    store.record_acceptance(dataset.id, ds, who, reason.strip())
    last = store.last_good_delivery(dataset.id, ds)
    before = f" (last good night {last[0]}: {last[1]:,} rows)" if last else ""
    click.echo(
        f"accepted {dataset.id} {ds} by {who}{before}: {reason.strip()}\n"
        f"run the night again: lake run --date {ds}"
    )


@main.command()
@click.option(
    "--orphan-age-hours",
    type=float,
    default=ORPHAN_AGE_HOURS,
    show_default=True,
    help="Only remove unreferenced files older than this (a running writer's are younger).",
)
@click.pass_obj
def maintain(settings: LakeSettings, orphan_age_hours: float) -> None:
    """Expire raw-table snapshots past each dataset's retention; remove orphan files."""
    _maintain(settings, orphan_age_hours)


def _maintain(settings: LakeSettings, orphan_age_hours: float) -> None:
    from datetime import timedelta

    from catalog.definitions import load_catalog
    from etl.zones import catalog_retention

    lake = settings.lake()
    started = time.monotonic()
    reports = lake.maintain(
        catalog_retention(load_catalog().datasets), orphan_age=timedelta(hours=orphan_age_hours)
    )
    for r in reports:
        if r.snapshots_expired or r.orphans_removed:
            click.echo(
                f"  {r.table:44s} {r.snapshots_expired:3d} snapshots expired, "
                f"{r.orphans_removed:3d} orphan files removed ({r.bytes_removed:,} bytes)"
            )
    expired = sum(r.snapshots_expired for r in reports)
    orphans = sum(r.orphans_removed for r in reports)
    click.echo(
        f"  {len(reports)} tables maintained in {time.monotonic() - started:.1f}s: "
        f"{expired} snapshots expired, {orphans} orphan files removed"
    )


@main.command()
@click.argument("query")
@click.option("--max-rows", type=int, default=40, show_default=True)
@click.pass_obj
def sql(settings: LakeSettings, query: str, max_rows: int) -> None:
    """Run QUERY in DuckDB over the raw tables (committed nights only), print the result.

    Tables are named ZONE.DEPT_DATASET with ZONE one of sources, clean, quarantine, unified,
    e.g. `lake sql "SELECT dt, count(*) FROM clean.gongan_population GROUP BY dt"`. Only the
    tables the query names are read (through pyiceberg into Arrow, no DuckDB extension).
    """
    import duckdb

    lake = settings.lake()
    con = duckdb.connect()
    for identifier in lake.raw_tables():
        schema, name = identifier[0].removeprefix("raw_"), "_".join(identifier[1:])
        if f"{schema}.{name}".lower() not in query.lower():
            continue
        view = f"__{schema}__{name}"
        con.register(view, lake.committed_table(identifier))
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        con.execute(f'CREATE VIEW "{schema}"."{name}" AS SELECT * FROM "{view}"')
    try:
        result = con.sql(query)
    except duckdb.Error as exc:
        raise LakeError(f"sql: {str(exc).splitlines()[0]}") from exc
    if result is None:
        return
    result.show(max_rows=max_rows, max_width=200)


@main.command()
@click.option(
    "--as-of",
    "as_of",
    callback=_parse_date,
    help="Show the night of this date as the lake holds it (snapshots, what a rerun replaced).",
)
@click.pass_obj
def status(settings: LakeSettings, as_of: date | None) -> None:
    """Latest runs and their errors, the latest night, quality figures per dataset."""
    from catalog.store import CatalogStore

    store = CatalogStore(settings.catalog_url)
    if as_of is not None:
        _print_snapshots(settings, as_of)
        return
    runs = store.runs(limit=10)
    if not runs:
        click.echo("no runs yet: try `lake demo`")
        return
    for r in runs:
        click.echo(f"{r.ds}  {r.status:8s} {r.run_id}")
        for err in store.errors(r.run_id):
            click.echo(f"    failed: {err.message}")
    click.echo(f"\nlatest night {runs[0].ds} (run {runs[0].run_id}):")
    _print_night(settings, runs[0].ds, runs[0].run_id)
    latest = store.latest_quality()
    if latest:
        click.echo("\nlatest quality figures per dataset:")
        for q in latest:
            top = ", ".join(f"{k} {v:,}" for k, v in q.top_failures(3))
            click.echo(
                f"  {q.dataset_id:36s} {q.ds}  {q.checks:3d} checks, {q.failed_checks:2d} failing, "
                f"{q.quarantined_share:6.2%} quarantined  {top}"
            )
            if q.docs:
                click.echo(f"  {'':36s} data docs: {q.docs}")
    latest = {d.grant_id: d for d in _grants(settings).distributions(runs[0].ds)}  # last run wins
    deliveries = list(latest.values())
    if deliveries:
        click.echo(f"\nshared extracts {runs[0].ds}:")
        for d in deliveries:
            state = f"{d.rows:>10,} rows" if d.delivered else f"BLOCKED: {d.reason}"
            click.echo(f"  {d.consumer:10s} ← {d.dataset_id:36s} grant #{d.grant_id:<4d} {state}")
    publications = store.publications(runs[0].ds)
    if publications:
        click.echo(f"\nopen data {runs[0].ds} (public/index.html):")
        for p in publications:
            r = p.report
            state = (
                f"k={r['achieved_k']} (asked {r['k']}), {r['rows_published']:,} rows, "
                f"{r['suppressed_rows']:,} suppressed, highest risk {r['highest_risk']:.3f}"
                if p.status == "published"
                else f"BLOCKED: {r['reason']}"
            )
            click.echo(f"  {p.name:36s} {state}")

    unified = store.unification()
    if unified:
        click.echo(f"\nlatest unification ({unified.ds}):")
        click.echo(f"  {unified.summary()}")
        click.echo(f"  persons by rule:     {_rules_text(unified.person_rules)}")
        click.echo(f"  enterprises by rule: {_rules_text(unified.enterprise_rules)}")
        click.echo(
            f"  rows conserved: {'yes' if unified.conserved else 'NO'}"
            f" ({unified.clean_rows:,} clean = {unified.subject_rows:,} crosswalk subjects);"
            f" persons with two valid IDs: {unified.conflicting_id_clusters}"
        )
        how = unified.details.get("how")
        changed = unified.details.get("incremental")
        if how == "incremental" and changed:
            click.echo(
                f"  incremental: {changed['new_mentions']:,} mentions new or changed,"
                f" {changed['replaced_mentions']:,} replaced; {changed['region_persons']:,}"
                f" persons re-resolved (model of {unified.details.get('model_estimated_on')})"
            )
        elif how:
            click.echo(f"  {how}")


def _rules_text(rules: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in rules.items())


def _latest_unified(settings: LakeSettings, ds: date | None) -> date:
    from catalog.store import CatalogStore

    figures = CatalogStore(settings.catalog_url).unification(ds)
    if figures is None:
        raise LakeError(
            f"no unified tables for {ds}" if ds else "no unified tables yet: run a night first"
        )
    return figures.ds


@main.command()
@date_option("the latest unified night")
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    help="Ground-truth folder (default: the simulator's, var/ground_truth).",
)
@click.pass_obj
def score(settings: LakeSettings, ds: date | None, truth: Path | None) -> None:
    """Pairwise precision, recall and F1 of the crosswalks against the ground truth."""
    from catalog.store import CatalogStore
    from etl.score import pairwise_scores, read_truth

    ds = _latest_unified(settings, ds)
    lake = settings.lake()
    gt = read_truth(truth or settings.ground_truth_dir)
    figures = CatalogStore(settings.catalog_url).unification(ds)
    click.echo(f"unified {ds} against {truth or settings.ground_truth_dir}:")
    for entity in ("person", "enterprise"):
        xref = lake.read_partition(lake.unified_partition(f"{entity}_xref", ds)).to_pandas()
        click.echo(
            f"  {entity + 's':12s} {'rows':>9s} {'pred pairs':>11s} {'true pairs':>11s}"
            f" {'precision':>10s} {'recall':>8s} {'F1':>8s}"
        )
        for s in pairwise_scores(xref, f"{entity}_id", gt):
            click.echo(
                f"  {s.rule:12s} {s.rows:9,} {s.predicted:11,} {s.true:11,}"
                f" {s.precision:10.4f} {s.recall:8.4f} {s.f1:8.4f}"
            )
    if figures:
        click.echo(f"  merges of two different valid IDs: {figures.conflicting_id_clusters}")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["person"]), default="person", show_default=True)
@click.option(
    "--columns",
    "columns",
    required=True,
    help="Roles to columns: name=姓名,birth_date=出生日期,phone=电话,district=区县,sex=性别",
)
@click.option("--encoding", help="Encoding of a CSV file (utf-8, gbk …); required for CSV.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Parquet out.")
@click.option("--link", is_flag=True, help="Also link each row to the unified persons.")
@date_option("the latest unified night")
@click.pass_obj
def match(
    settings: LakeSettings,
    file: Path,
    kind: str,
    columns: str,
    encoding: str | None,
    out: Path,
    link: bool,
    ds: date | None,
) -> None:
    """Deduplicate a list of people (no IDs needed) with the lake's matcher."""
    from etl.match_list import match_list, parse_roles, read_list, write_matched

    roles = parse_roles(columns, file)
    frame = read_list(file, encoding)
    persons = None
    if link:
        lake = settings.lake()
        persons = lake.read_partition(
            lake.unified_partition("person", _latest_unified(settings, ds))
        ).to_pandas()
    started = time.monotonic()
    result = match_list(frame, roles, file, persons)
    write_matched(result.rows, out)
    linked = f", {result.linked:,} linked to unified persons" if result.linked is not None else ""
    click.echo(
        f"{file}: {len(frame):,} rows → {result.clusters:,} clusters{linked}"
        f" in {time.monotonic() - started:.1f}s; written to {out}"
    )


if __name__ == "__main__":
    main()
