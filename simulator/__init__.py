"""Synthetic department systems of Jiangmen with ground truth (docs/architecture.md §3-4).

``build_departments`` draws one true world of persons and enterprises for a seed and
writes each department's view of it (SQL tables, GBK CSV, JSON Lines, BOM CSV, .xlsx)
with realistic dirt; ``advance_day`` moves the simulated date on by one day;
``make_hostile_delivery`` replaces a file drop by a broken one. The ground truth goes to
a folder the pipeline never reads.
"""

from simulator.build import SimulationSummary, build_departments
from simulator.daily import advance_day, simulated_date
from simulator.hostile import HOSTILE_KINDS, HostileKind, make_hostile_delivery
from simulator.rates import DailyRates, DirtRates

__all__ = [
    "HOSTILE_KINDS",
    "DailyRates",
    "DirtRates",
    "HostileKind",
    "SimulationSummary",
    "advance_day",
    "build_departments",
    "make_hostile_delivery",
    "simulated_date",
]
