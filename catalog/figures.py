"""The figures a step reports about one dataset and date, on one object each.

The CLI, the quality page, the quality gate and the circuit breaker all read these objects,
so a share or a conservation check is computed in exactly one place. Unification and
publishing add their own figures (crosswalk counts, achieved k, suppression) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class QualityFigures:
    """Validation of one dataset's delivery: row arithmetic and the checks that failed."""

    dataset_id: str
    ds: date
    delivered: int
    clean: int
    quarantined: int
    collapsed: int
    checks: int
    failed_checks: int
    details: dict = field(default_factory=dict)  # failures, repaired, schema_notes, docs …
    run_id: str | None = None
    # change detection on snapshot drops (etl/changes.py): rows identical to the last good
    # night's, carried forward clean without validating them again; keys gone since then
    unchanged: int = 0
    deleted: int = 0

    @property
    def conserved(self) -> bool:
        """Every delivered row is unchanged, clean, quarantined or a collapsed older version."""
        return self.delivered == self.unchanged + self.clean + self.quarantined + self.collapsed

    @property
    def published(self) -> int:
        """Rows in the clean partition: validated tonight plus carried forward unchanged."""
        return self.clean + self.unchanged

    @property
    def quarantined_share(self) -> float:
        return self.quarantined / self.delivered if self.delivered else 0.0

    @property
    def failures(self) -> dict[str, int]:
        """Failing rows per check (checks that found nothing are left out)."""
        return {k: v for k, v in self.details.get("failures", {}).items() if v}

    def top_failures(self, n: int = 3) -> list[tuple[str, int]]:
        return sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def top_failures_text(self, n: int = 3) -> str:
        return ", ".join(f"{name} ({count:,})" for name, count in self.top_failures(n)) or "none"

    @property
    def schema_notes(self) -> list[str]:
        return list(self.details.get("schema_notes", []))

    @property
    def docs(self) -> str | None:
        return self.details.get("docs")

    def summary(self) -> str:
        unchanged = f"unchanged {self.unchanged:,} + " if self.unchanged else ""
        deleted = f"; {self.deleted:,} keys deleted since the last night" if self.deleted else ""
        return (
            f"{self.dataset_id} {self.ds}: delivered {self.delivered:,} = {unchanged}"
            f"clean {self.clean:,} + quarantined {self.quarantined:,} + collapsed duplicates "
            f"{self.collapsed:,}{deleted}"
        )


@dataclass(frozen=True)
class UnificationFigures:
    """One night's unification: how many records became how many persons and enterprises.

    ``*_rules`` count crosswalk rows per match rule; ``subject_rows`` are the clean input
    rows (each must appear in exactly one crosswalk row as its subject: ``conserved``);
    ``conflicting_id_clusters`` counts persons holding two different valid IDs (always 0
    unless the matcher is broken).
    """

    ds: date
    clean_rows: int
    subject_rows: int
    persons: int
    persons_with_id: int
    person_rows: int
    person_rules: dict
    enterprises: int
    unlinked_enterprises: int
    enterprise_rows: int
    enterprise_rules: dict
    conflicting_id_clusters: int
    id_changes: int  # crosswalk rows whose unified id changed since the previous night
    details: dict = field(default_factory=dict)  # blocking pairs, model weights, timings …
    run_id: str | None = None

    @property
    def conserved(self) -> bool:
        """Every clean row is the subject of exactly one crosswalk row."""
        return self.clean_rows == self.subject_rows

    def summary(self) -> str:
        return (
            f"unified {self.ds}: {self.clean_rows:,} clean rows → {self.persons:,} persons"
            f" ({self.persons_with_id:,} with a valid ID), {self.enterprises:,} enterprises"
            f" ({self.unlinked_enterprises:,} unlinked); ids changed: {self.id_changes:,}"
        )
