"""The quarantine circuit breaker: is tonight's quarantine a real problem or bad luck?

A pure function of the night's figures and the dataset's limit (docs/decisions/0007). It
trips when the quarantined *count* is too high to be chance at the dataset's
``quarantine_limit``: if a delivery's rows were bad with probability ``limit`` each, a count
this high (or higher) would come up in fewer than one night in a thousand (a one-sided exact
binomial test). So the count and the share decide together: 3 bad rows of 8 (37 %) is
still noise, 16 of 120 (13 %) is not, and 5.5 % of 3 million rows trips although only half a
point above a 5 % limit. A catalog column missing from the delivery is a broken export
whatever the size of the night, and always trips.
"""

from __future__ import annotations

from catalog.figures import QualityFigures

SIGNIFICANCE = 0.001  # chance of tripping on a night whose rows are bad at exactly the limit


def chance_of_at_least(quarantined: int, delivered: int, limit: float) -> float:
    """P(X ≥ quarantined) for X ~ Binomial(delivered, limit): how unusual tonight's count is."""
    if quarantined <= 0:
        return 1.0
    if limit <= 0:
        return 0.0
    from scipy.stats import binom  # deferred: scipy is heavy to import and needed only here

    return float(binom.sf(quarantined - 1, delivered, limit))


def breaker_trips(
    figures: QualityFigures,
    limit: float,
    *,
    schema_broken: bool = False,
    significance: float = SIGNIFICANCE,
) -> bool:
    """Too many rows failed to be chance at ``limit`` (or the delivery lost a column)."""
    if figures.delivered == 0 or figures.quarantined == 0:
        return False
    if schema_broken:
        return True
    if figures.quarantined_share <= limit:
        return False
    return chance_of_at_least(figures.quarantined, figures.delivered, limit) < significance
