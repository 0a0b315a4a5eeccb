"""The statistics behind every proposal: win rate, lift, Wilson intervals, PSI.

Lift = win rate among accounts with a value / the base win rate. Its 95 %
interval is the Wilson score interval of the win rate divided by the base
rate: the base rate is treated as known (it is estimated from the whole
population, far more accounts than any one value), which keeps the interval
cheap and readable in a YAML comment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Evidence:
    """How accounts with one value (or band, or item) fared against the base rate."""

    support: int  # accounts in the population with the value
    wins: int  # of which won
    population: int
    population_wins: int

    @property
    def win_rate(self) -> float:
        return self.wins / self.support if self.support else 0.0

    @property
    def base_rate(self) -> float:
        return self.population_wins / self.population if self.population else 0.0

    @property
    def lift(self) -> float:
        base = self.base_rate
        return self.win_rate / base if base else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95 % interval of the lift."""
        base = self.base_rate
        if not base:
            return 0.0, 0.0
        low, high = wilson(self.wins, self.support)
        return low / base, high / base

    @property
    def won_share(self) -> float:
        """Share of the won accounts that have the value."""
        return self.wins / self.population_wins if self.population_wins else 0.0

    @property
    def other_share(self) -> float:
        """Share of the accounts not won that have the value."""
        others = self.population - self.population_wins
        return (self.support - self.wins) / others if others else 0.0

    def summary(self) -> str:
        """One line for a YAML comment or a report."""
        low, high = self.interval
        return (
            f"support {self.support}, won {self.wins} ({self.won_share:.0%} of wins), "
            f"win rate {self.win_rate:.1%} vs base {self.base_rate:.1%}, "
            f"lift {self.lift:.2f} (95% {low:.2f}-{high:.2f})"
        )


def psi(actual: Sequence[float], expected: Sequence[float], floor: float = 1e-4) -> float:
    """Population stability index of two distributions over the same bins.

    Shares are floored so an empty bin does not make it infinite. By the usual
    rule of thumb < 0.1 is stable, 0.1-0.25 a moderate shift, > 0.25 a major one.
    """
    total_a = sum(actual) or 1.0
    total_e = sum(expected) or 1.0
    index = 0.0
    for a, e in zip(actual, expected, strict=True):
        share_a = max(a / total_a, floor)
        share_e = max(e / total_e, floor)
        index += (share_a - share_e) * math.log(share_a / share_e)
    return index


def psi_label(index: float) -> str:
    if index < 0.1:
        return "stable"
    return "moderate shift" if index < 0.25 else "major shift"
