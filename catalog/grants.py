"""Grants, the distribution log and the audit log: who may receive what, who received what.

A grant (统一分配调取) gives one consumer department a set of fields of one dataset, for a
purpose and a legal basis, from a date to a date, until revoked. The shared step delivers
exactly the active grants of a night and writes each delivery (or blocked delivery) to the
distribution log. Re-identification of a token is audited: who, why, when, which token.
The tables live in the catalog store's database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import JSON, Boolean, Date, DateTime, Integer, String, Text, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from catalog.definitions import Catalog
from catalog.errors import CatalogError
from catalog.store import Base, CatalogStore

CSV_ENCODINGS = ("utf-8-sig", "gb18030")  # Excel opens both with Chinese intact


class Grant(Base):
    __tablename__ = "grants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(60), index=True)
    dataset_id: Mapped[str] = mapped_column(String(120), index=True)
    fields: Mapped[list] = mapped_column(JSON)  # delivered, as the policy says
    clear_fields: Mapped[list] = mapped_column(JSON, default=list)  # approved in clear (有条件)
    purpose: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    csv_encoding: Mapped[str] = mapped_column(String(20), default="utf-8-sig")
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(120))
    revoke_reason: Mapped[str | None] = mapped_column(Text)

    def active_on(self, ds: date) -> bool:
        return (
            self.revoked_at is None
            and self.valid_from <= ds
            and (self.valid_to is None or ds <= self.valid_to)
        )

    def describe(self) -> str:
        until = self.valid_to.isoformat() if self.valid_to else "open-ended"
        state = f"revoked {self.revoked_at:%Y-%m-%d}" if self.revoked_at else "active"
        clear = f" clear: [{', '.join(self.clear_fields)}]" if self.clear_fields else ""
        return (
            f"#{self.id} {self.consumer} ← {self.dataset_id} [{', '.join(self.fields)}]{clear} "
            f"{self.valid_from}..{until} ({state}); purpose: {self.purpose}; "
            f"basis: {self.legal_basis}"
        )


class Distribution(Base):
    """One delivery of one partition to one consumer (or one blocked by the leak scan)."""

    __tablename__ = "distributions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(250), index=True)
    grant_id: Mapped[int] = mapped_column(Integer, index=True)
    consumer: Mapped[str] = mapped_column(String(60), index=True)
    dataset_id: Mapped[str] = mapped_column(String(120))
    ds: Mapped[date] = mapped_column(Date, index=True)
    path: Mapped[str | None] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str | None] = mapped_column(String(80))
    key_id: Mapped[str | None] = mapped_column(String(40))
    delivered: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)  # why it was blocked, without values
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """An authorised re-identification (token → raw record): who, why, when, which token."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    who: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(40))
    consumer: Mapped[str] = mapped_column(String(60))
    token: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    found: Mapped[int] = mapped_column(Integer)  # raw records the token led to


@dataclass(frozen=True)
class GrantRequest:
    consumer: str
    dataset_id: str
    fields: list[str]
    purpose: str
    legal_basis: str
    valid_from: date
    valid_to: date | None = None
    csv_encoding: str = "utf-8-sig"
    clear_fields: list[str] = field(default_factory=list)


class GrantRegistry:
    """Grants, distributions and audit entries in the catalog store's database."""

    def __init__(self, store: CatalogStore) -> None:
        self.engine = store.engine  # its tables come with the store's migrations (0002)

    def add(self, request: GrantRequest, catalog: Catalog, by: str) -> Grant:
        """Check the request against the catalog, then record it; one line per problem."""
        _check_request(request, catalog)
        grant = Grant(
            consumer=request.consumer,
            dataset_id=catalog.dataset(request.dataset_id).id,
            fields=list(request.fields),
            clear_fields=list(request.clear_fields),
            purpose=request.purpose,
            legal_basis=request.legal_basis,
            valid_from=request.valid_from,
            valid_to=request.valid_to,
            csv_encoding=request.csv_encoding,
            created_by=by,
            created_at=_now(),
        )
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            s.add(grant)
        return grant

    def revoke(self, grant_id: int, by: str, reason: str) -> Grant:
        if not reason.strip():
            raise CatalogError("a revocation needs a reason (--reason)")
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            grant = s.get(Grant, grant_id)
            if grant is None:
                raise CatalogError(f"no grant #{grant_id} (see `lake grant list`)")
            if grant.revoked_at is None:
                grant.revoked_at, grant.revoked_by, grant.revoke_reason = _now(), by, reason
        return grant

    def grants(self, consumer: str | None = None) -> list[Grant]:
        query = select(Grant).order_by(Grant.id)
        if consumer:
            query = query.where(Grant.consumer == consumer)
        with Session(self.engine) as s:
            return list(s.scalars(query))

    def active(self, ds: date, consumer: str | None = None) -> list[Grant]:
        """Grants in force on ``ds``: not revoked, ``valid_from <= ds <= valid_to``."""
        query = select(Grant).where(
            Grant.revoked_at.is_(None),
            Grant.valid_from <= ds,
            or_(Grant.valid_to.is_(None), Grant.valid_to >= ds),
        )
        if consumer:
            query = query.where(Grant.consumer == consumer)
        with Session(self.engine) as s:
            return list(s.scalars(query.order_by(Grant.id)))

    def consumers(self, ds: date) -> list[str]:
        return sorted({g.consumer for g in self.active(ds)})

    def record_distribution(self, entry: Distribution) -> None:
        entry.at = _now()
        with Session(self.engine) as s, s.begin():
            s.add(entry)

    def distributions(self, ds: date | None = None) -> list[Distribution]:
        query = select(Distribution).order_by(Distribution.id)
        if ds is not None:
            query = query.where(Distribution.ds == ds)
        with Session(self.engine) as s:
            return list(s.scalars(query))

    def audit(self, entry: AuditEntry) -> None:
        if not entry.reason.strip():
            raise CatalogError("re-identification needs a reason (--reason); it is audited")
        entry.at = _now()
        with Session(self.engine) as s, s.begin():
            s.add(entry)

    def audit_log(self) -> list[AuditEntry]:
        with Session(self.engine) as s:
            return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def _check_request(request: GrantRequest, catalog: Catalog) -> None:
    if request.consumer not in catalog.departments:
        known = ", ".join(sorted(catalog.departments))
        raise CatalogError(f"unknown consumer department '{request.consumer}' (known: {known})")
    dataset = catalog.dataset(request.dataset_id)  # one line for an unknown dataset
    unknown = [f for f in request.fields if f not in dataset.field_names]
    if unknown or not request.fields:
        raise CatalogError(
            f"grant on {dataset.id}: unknown field(s) {', '.join(unknown) or '(none given)'}"
            f"; fields: {', '.join(dataset.field_names)}"
        )
    not_requested = [f for f in request.clear_fields if f not in request.fields]
    if not_requested:
        raise CatalogError(
            f"grant on {dataset.id}: clear field(s) {', '.join(not_requested)} are not among "
            "the granted fields"
        )
    if request.valid_to is not None and request.valid_to < request.valid_from:
        raise CatalogError(
            f"grant ends ({request.valid_to}) before it starts ({request.valid_from})"
        )
    if request.csv_encoding not in CSV_ENCODINGS:
        raise CatalogError(f"CSV encoding must be one of {', '.join(CSV_ENCODINGS)}")
    if not request.purpose.strip() or not request.legal_basis.strip():
        raise CatalogError("a grant needs a purpose and a legal basis")


def _now() -> datetime:
    return datetime.now(UTC)
