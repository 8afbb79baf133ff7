"""The catalog store: what the lake has done, in a SQL database behind SQLAlchemy.

Runs, the partitions each run wrote, per-dataset extraction watermarks, and the lake's
commit points: which Iceberg snapshot holds each raw partition (``lake_snapshots``). The
Iceberg catalog's own pointer tables (``iceberg_tables`` …) live in the same database, so
one database says what the lake holds. SQLite under ``var/`` by default; any SQLAlchemy
URL (PostgreSQL in production) works unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from catalog.errors import CatalogError, database_reason, impersonal, shown_url
from catalog.figures import QualityFigures, UnificationFigures
from catalog.files import OWNER_FILE_MODE, new_owner_file
from catalog.schema import ensure_current


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One night (or rerun) for one partition date."""

    __tablename__ = "runs"
    run_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    ds: Mapped[date] = mapped_column(Date, index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20))  # running / success / failed


class Partition(Base):
    """A committed partition in a zone (the manifest's facts, queryable)."""

    __tablename__ = "partitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(250), index=True)
    zone: Mapped[str] = mapped_column(String(40))  # raw/sources, raw/clean, shared, public …
    dataset_id: Mapped[str] = mapped_column(String(120), index=True)
    consumer: Mapped[str | None] = mapped_column(String(60))
    ds: Mapped[date] = mapped_column(Date, index=True)
    path: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(80))
    written_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Watermark(Base):
    """The ``updated_at`` range an incremental extraction for one date covered."""

    __tablename__ = "watermarks"
    dataset_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    ds: Mapped[date] = mapped_column(Date, primary_key=True)
    low: Mapped[str | None] = mapped_column(String(40))
    high: Mapped[str | None] = mapped_column(String(40))
    rows: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(String(250))


class RunError(Base):
    """Why a step of a run failed, in one line, so `lake run`/`lake status` can say it."""

    __tablename__ = "run_errors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(250), index=True)
    step: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QualityResult(Base):
    """Validation figures of one dataset and date (the latest run of that date wins)."""

    __tablename__ = "quality_results"
    dataset_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    ds: Mapped[date] = mapped_column(Date, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(250))
    delivered: Mapped[int] = mapped_column(Integer)
    clean: Mapped[int] = mapped_column(Integer)
    quarantined: Mapped[int] = mapped_column(Integer)
    collapsed: Mapped[int] = mapped_column(Integer)
    checks: Mapped[int] = mapped_column(Integer)
    failed_checks: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict] = mapped_column(JSON)
    validated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    unchanged: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deleted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LineageEdge(Base):
    """One input partition of an output partition (raw/sources → clean → public …).

    Keyed by path: an output's edges are replaced when the output is rewritten, so a rerun
    records what made the partition that is there now.
    """

    __tablename__ = "lineage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    output_path: Mapped[str] = mapped_column(String(500), index=True)
    input_path: Mapped[str] = mapped_column(String(500), index=True)
    run_id: Mapped[str] = mapped_column(String(250))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Publication(Base):
    """What the open-data run did with one public dataset or table on one date.

    ``report`` holds the k-anonymity figures (achieved k, generalisation, suppressed rows,
    prosecutor risk) or why publication was blocked; never a data value.
    """

    __tablename__ = "publications"
    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    ds: Mapped[date] = mapped_column(Date, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(20))  # published / blocked
    report: Mapped[dict] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LakeSnapshot(Base):
    """The commit point of one raw partition: the Iceberg snapshot readers must read.

    A night's write of a (zone, table, date) commits to Iceberg first; the snapshot ids of
    all the tables a step wrote (clean and quarantine) are then recorded here in one
    transaction. Readers follow this row, so they see the old night or the new one, never
    a mix, even if a writer died between its Iceberg commits.
    """

    __tablename__ = "lake_snapshots"
    zone: Mapped[str] = mapped_column(String(40), primary_key=True)
    table: Mapped[str] = mapped_column(String(250), primary_key=True)  # <dept>/<dataset>
    ds: Mapped[date] = mapped_column(Date, primary_key=True)
    snapshot_id: Mapped[int | None] = mapped_column(BigInteger)  # None: an empty first write
    previous_snapshot_id: Mapped[int | None] = mapped_column(BigInteger)  # what a rerun replaced
    run_id: Mapped[str] = mapped_column(String(250))
    rows: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(80))
    columns: Mapped[list] = mapped_column(JSON)  # the columns this delivery had
    extra: Mapped[dict] = mapped_column(JSON)
    committed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class SnapshotRecord:
    """What :meth:`CatalogStore.record_snapshots` records for one partition."""

    zone: str
    table: str
    ds: date
    snapshot_id: int | None
    run_id: str
    rows: int
    fingerprint: str
    columns: list[str]
    extra: dict


class Acceptance(Base):
    """A person's word that one date's delivery really is that small (``lake accept``).

    The volume check lets that date's extraction through once a row exists; every
    acceptance is kept (who, when, why), the newest one counts.
    """

    __tablename__ = "acceptances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(String(120), index=True)
    ds: Mapped[date] = mapped_column(Date, index=True)
    accepted_by: Mapped[str] = mapped_column(String(120))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)


class UnificationResult(Base):
    """Unification figures of one date (the latest run of that date wins)."""

    __tablename__ = "unification_results"
    ds: Mapped[date] = mapped_column(Date, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(String(250))
    figures: Mapped[dict] = mapped_column(JSON)
    unified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class PartitionRecord:
    zone: str
    dataset_id: str
    ds: date
    path: str
    rows: int
    fingerprint: str
    consumer: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class CatalogStore:
    """Thin, typed access to the store; every method is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            _owner_only_sqlite_file(Path(parsed.database))
        self.engine: Engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            ensure_current(self.engine)  # an empty store is created, an older one refused
        except SQLAlchemyError as exc:
            shown = shown_url(parsed)
            reason = database_reason(exc)
            raise CatalogError(f"catalog store {shown} cannot be used: {reason}") from exc

    def start_run(self, run_id: str, ds: date) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(RunError).where(RunError.run_id == run_id))
            run = s.get(Run, run_id) or Run(run_id=run_id, ds=ds, started_at=_now())
            run.status, run.finished_at, run.started_at = "running", None, _now()
            s.add(run)

    def finish_run(self, run_id: str, status: str) -> None:
        with Session(self.engine) as s, s.begin():
            run = s.get(Run, run_id)
            if run is not None:
                run.status, run.finished_at = status, _now()

    def record_partition(self, run_id: str, part: PartitionRecord) -> None:
        """Record a committed partition, replacing the record of the one it replaced."""
        with Session(self.engine) as s, s.begin():
            old = s.scalars(
                select(Partition).where(
                    Partition.zone == part.zone,
                    Partition.dataset_id == part.dataset_id,
                    Partition.ds == part.ds,
                    (Partition.consumer == part.consumer)
                    if part.consumer
                    else Partition.consumer.is_(None),
                )
            ).all()
            for row in old:
                s.delete(row)
            s.add(Partition(run_id=run_id, written_at=_now(), **part.__dict__))

    def partitions(self, ds: date | None = None, zone: str | None = None) -> list[Partition]:
        query = select(Partition).order_by(Partition.ds, Partition.zone, Partition.dataset_id)
        if ds is not None:
            query = query.where(Partition.ds == ds)
        if zone is not None:
            query = query.where(Partition.zone == zone)
        with Session(self.engine) as s:
            return list(s.scalars(query))

    def extraction_window(self, dataset_id: str, ds: date) -> tuple[str | None, str | None]:
        """The ``updated_at`` window ``(low, high]`` an incremental extraction of ``ds`` reads.

        A date extracted before keeps its recorded window, so a rerun reads exactly the same
        rows even after later nights ran. A new date starts where the latest earlier date
        stopped and ends where the next later date (if any, say after a gap) began; ``None``
        means unbounded. Keyed on dates, not on "the last run", so backfills skip nothing.
        Rows with no ``updated_at`` are outside every window; the reader adds them to each
        one (docs/decisions/0009-null-watermarks.md), so a rerun still reads what it read.
        """
        with Session(self.engine) as s:
            recorded = s.get(Watermark, (dataset_id, ds))
            if recorded is not None:
                return recorded.low, recorded.high
            low = s.scalar(
                select(func.max(Watermark.high)).where(
                    Watermark.dataset_id == dataset_id, Watermark.ds < ds
                )
            )
            later = s.execute(
                select(Watermark.low, Watermark.high)
                .where(Watermark.dataset_id == dataset_id, Watermark.ds > ds)
                .order_by(Watermark.ds)
                .limit(1)
            ).first()
            if later is None:
                return low, None
            if later.low is None and later.high is not None:
                # the next night was a first full load: it already holds everything up to
                # its end, so this earlier date gets an empty window
                return later.high, later.high
            return low, later.low

    def latest_ids(self) -> tuple[int, int]:
        """The newest partition and error ids, to watch for what comes after them."""
        with Session(self.engine) as s:
            return (
                s.scalar(select(func.max(Partition.id))) or 0,
                s.scalar(select(func.max(RunError.id))) or 0,
            )

    def partitions_after(self, partition_id: int) -> list[Partition]:
        with Session(self.engine) as s:
            query = select(Partition).where(Partition.id > partition_id).order_by(Partition.id)
            return list(s.scalars(query))

    def errors_after(self, error_id: int) -> list[RunError]:
        with Session(self.engine) as s:
            return list(
                s.scalars(select(RunError).where(RunError.id > error_id).order_by(RunError.id))
            )

    def record_watermark(
        self, dataset_id: str, ds: date, low: str | None, high: str | None, rows: int, run_id: str
    ) -> None:
        with Session(self.engine) as s, s.begin():
            s.merge(
                Watermark(
                    dataset_id=dataset_id, ds=ds, low=low, high=high, rows=rows, run_id=run_id
                )
            )

    def record_quality(self, run_id: str, figures: QualityFigures) -> None:
        values = {f.name: getattr(figures, f.name) for f in fields(figures)} | {"run_id": run_id}
        with Session(self.engine) as s, s.begin():
            s.merge(QualityResult(validated_at=_now(), **values))

    def latest_partition_before(self, zone: str, dataset_id: str, ds: date) -> Partition | None:
        """The dataset's newest partition in ``zone`` of a date before ``ds`` (its last night)."""
        with Session(self.engine) as s:
            return s.scalars(
                select(Partition)
                .where(Partition.zone == zone, Partition.dataset_id == dataset_id)
                .where(Partition.ds < ds, Partition.consumer.is_(None))
                .order_by(Partition.ds.desc())
                .limit(1)
            ).first()

    def partition(self, zone: str, dataset_id: str, ds: date) -> Partition | None:
        with Session(self.engine) as s:
            return s.scalars(
                select(Partition).where(
                    Partition.zone == zone,
                    Partition.dataset_id == dataset_id,
                    Partition.ds == ds,
                    Partition.consumer.is_(None),
                )
            ).first()

    def quality_of(self, dataset_id: str, ds: date) -> QualityFigures | None:
        with Session(self.engine) as s:
            row = s.get(QualityResult, (dataset_id, ds))
            return _figures(row) if row is not None else None

    def quality(self, ds: date) -> list[QualityFigures]:
        with Session(self.engine) as s:
            rows = s.scalars(select(QualityResult).where(QualityResult.ds == ds))
            return [_figures(q) for q in rows]

    def latest_quality(self) -> list[QualityFigures]:
        """The most recent validation figures of every dataset."""
        with Session(self.engine) as s:
            newest = (
                select(QualityResult.dataset_id, func.max(QualityResult.ds).label("ds"))
                .group_by(QualityResult.dataset_id)
                .subquery()
            )
            query = (
                select(QualityResult)
                .join(
                    newest,
                    (QualityResult.dataset_id == newest.c.dataset_id)
                    & (QualityResult.ds == newest.c.ds),
                )
                .order_by(QualityResult.dataset_id)
            )
            return [_figures(q) for q in s.scalars(query)]

    def record_unification(self, run_id: str, figures: UnificationFigures) -> None:
        values = {f.name: getattr(figures, f.name) for f in fields(figures)} | {"run_id": run_id}
        values["ds"] = values["ds"].isoformat()
        with Session(self.engine) as s, s.begin():
            s.merge(
                UnificationResult(ds=figures.ds, run_id=run_id, figures=values, unified_at=_now())
            )

    def unification(self, ds: date | None = None) -> UnificationFigures | None:
        """The unification figures of ``ds``, or of the latest unified date."""
        with Session(self.engine) as s:
            query = select(UnificationResult).order_by(UnificationResult.ds.desc()).limit(1)
            if ds is not None:
                query = select(UnificationResult).where(UnificationResult.ds == ds)
            row = s.scalars(query).first()
        if row is None:
            return None
        values = dict(row.figures) | {"ds": date.fromisoformat(row.figures["ds"])}
        return UnificationFigures(**values)

    def record_error(self, run_id: str, step: str, message: str) -> None:
        """Keep a step's one-line error (masked again here: the store is not the raw zone)."""
        message = impersonal(message, quoted=False)  # quoted names stay: values are gone
        with Session(self.engine) as s, s.begin():
            s.add(RunError(run_id=run_id, step=step, message=message, at=_now()))

    def clear_errors(self, run_id: str, step: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(RunError).where(RunError.run_id == run_id, RunError.step == step))

    def errors(self, run_id: str) -> list[RunError]:
        with Session(self.engine) as s:
            return list(s.scalars(select(RunError).where(RunError.run_id == run_id)))

    def record_lineage(self, run_id: str, output_path: str, input_paths: list[str]) -> None:
        """Record the partitions ``output_path`` was made from (replacing earlier records)."""
        with Session(self.engine) as s, s.begin():
            s.execute(delete(LineageEdge).where(LineageEdge.output_path == output_path))
            for path in dict.fromkeys(input_paths):
                s.add(
                    LineageEdge(
                        output_path=output_path, input_path=path, run_id=run_id, recorded_at=_now()
                    )
                )

    def lineage_inputs(self, path: str) -> list[str]:
        with Session(self.engine) as s:
            query = select(LineageEdge.input_path).where(LineageEdge.output_path == path)
            return sorted(s.scalars(query))

    def lineage_outputs(self, path: str) -> list[str]:
        with Session(self.engine) as s:
            query = select(LineageEdge.output_path).where(LineageEdge.input_path == path)
            return sorted(s.scalars(query))

    def partition_at(self, path: str) -> Partition | None:
        """The recorded partition at ``path`` (the newest record if it was rewritten)."""
        with Session(self.engine) as s:
            query = select(Partition).where(Partition.path == path).order_by(Partition.id.desc())
            return s.scalars(query.limit(1)).first()

    def record_publication(
        self, run_id: str, name: str, ds: date, status: str, report: dict
    ) -> None:
        with Session(self.engine) as s, s.begin():
            s.merge(
                Publication(
                    name=name, ds=ds, run_id=run_id, status=status, report=report, at=_now()
                )
            )

    def publications(self, ds: date) -> list[Publication]:
        with Session(self.engine) as s:
            query = select(Publication).where(Publication.ds == ds).order_by(Publication.name)
            return list(s.scalars(query))

    def record_snapshots(self, records: list[SnapshotRecord]) -> None:
        """The commit point: name the new snapshots of a step's partitions, all or none."""
        with Session(self.engine) as s, s.begin():
            for r in records:
                old = s.get(LakeSnapshot, (r.zone, r.table, r.ds))
                previous = old.snapshot_id if old is not None else None
                if old is not None:
                    s.delete(old)
                    s.flush()
                s.add(
                    LakeSnapshot(previous_snapshot_id=previous, committed_at=_now(), **r.__dict__)
                )

    def snapshot(self, zone: str, table: str, ds: date) -> LakeSnapshot | None:
        """The committed snapshot of one raw partition, or None when none was committed."""
        with Session(self.engine) as s:
            return s.get(LakeSnapshot, (zone, table, ds))

    def snapshots(
        self, ds: date | None = None, zone: str | None = None, table: str | None = None
    ) -> list[LakeSnapshot]:
        query = select(LakeSnapshot).order_by(
            LakeSnapshot.ds, LakeSnapshot.zone, LakeSnapshot.table
        )
        if ds is not None:
            query = query.where(LakeSnapshot.ds == ds)
        if zone is not None:
            query = query.where(LakeSnapshot.zone == zone)
        if table is not None:
            query = query.where(LakeSnapshot.table == table)
        with Session(self.engine) as s:
            return list(s.scalars(query))

    def last_good_delivery(self, dataset_id: str, before: date) -> tuple[date, int] | None:
        """The latest date before ``before`` whose run succeeded for this dataset, and its rows.

        Succeeded: its validation figures are recorded and that run has no error line for
        a step of this dataset (steps are named ``<step> <dataset id>``), so a night whose
        breaker tripped is not a good night even though its figures were written.
        """
        failed = select(RunError.run_id).where(
            RunError.step.endswith(f" {dataset_id}", autoescape=True)
        )
        query = (
            select(QualityResult.ds, QualityResult.delivered)
            .where(
                QualityResult.dataset_id == dataset_id,
                QualityResult.ds < before,
                QualityResult.run_id.not_in(failed),
            )
            .order_by(QualityResult.ds.desc())
            .limit(1)
        )
        with Session(self.engine) as s:
            row = s.execute(query).first()
        return (row.ds, row.delivered) if row else None

    def record_acceptance(self, dataset_id: str, ds: date, accepted_by: str, reason: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.add(
                Acceptance(
                    dataset_id=dataset_id,
                    ds=ds,
                    accepted_by=accepted_by,
                    accepted_at=_now(),
                    reason=reason,
                )
            )

    def acceptance(self, dataset_id: str, ds: date) -> Acceptance | None:
        """The newest acceptance of this dataset's delivery on ``ds``, if a person gave one."""
        with Session(self.engine) as s:
            return s.scalars(
                select(Acceptance)
                .where(Acceptance.dataset_id == dataset_id, Acceptance.ds == ds)
                .order_by(Acceptance.id.desc())
                .limit(1)
            ).first()

    def runs(self, limit: int = 20) -> list[Run]:
        with Session(self.engine) as s:
            return list(s.scalars(select(Run).order_by(Run.started_at.desc()).limit(limit)))


def _figures(row: QualityResult) -> QualityFigures:
    return QualityFigures(**{f.name: getattr(row, f.name) for f in fields(QualityFigures)})


def _owner_only_sqlite_file(path: Path) -> None:
    """The catalog database is the owner's alone (runs, errors, figures about people's
    deliveries). SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        new_owner_file(path)
    else:
        os.chmod(path, OWNER_FILE_MODE)


def tune_sqlite(engine: Engine) -> None:
    """WAL and a 30 s busy timeout for an engine on the store's SQLite file (pyiceberg's
    catalog opens its own engine on it; parallel tasks commit to both)."""
    if engine.url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        engine.dispose()  # connections opened before the listener get it on reopening


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API object
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
