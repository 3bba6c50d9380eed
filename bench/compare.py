"""Alternate two measurements and summarise them as medians, a ratio and a spread.

Running A, B, A, B, ... in one process on one server means slow phases of the
machine (another engineer's test suite, a cron job) hit both sides alike; the
median of each side and the range of the per-round ratios show how much that
noise still moves the answer.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Comparison", "alternate", "spread"]

T = TypeVar("T")


def spread(values: Sequence[float]) -> float:
    """Return (max - min) / median: how far apart the rounds of one side were."""
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


@dataclass
class Comparison(Generic[T]):
    """The rounds of A and B, in the order they ran, and the figure compared."""

    key: Callable[[T], float]
    a: list[T] = field(default_factory=list)
    b: list[T] = field(default_factory=list)

    def median(self, side: str, key: Callable[[T], float] | None = None) -> float:
        """Median of ``key`` (default: the compared figure) over one side's rounds."""
        runs = self.a if side == "a" else self.b
        return statistics.median((key or self.key)(r) for r in runs)

    @property
    def ratio(self) -> float:
        """Median of A divided by median of B."""
        b = self.median("b")
        return self.median("a") / b if b else float("inf")

    def round_ratios(self) -> list[float]:
        """A/B of each round (A and B of one round ran back to back)."""
        pairs = zip(self.a, self.b, strict=False)
        return [self.key(a) / self.key(b) for a, b in pairs if self.key(b)]

    def spread_text(self) -> str:
        """Describe the spread: per-side (max-min)/median and the range of round ratios."""
        ratios = self.round_ratios()
        span = f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "-"
        return (f"A ±{spread([self.key(r) for r in self.a]) * 50:.0f}%, "
                f"B ±{spread([self.key(r) for r in self.b]) * 50:.0f}%, rounds {span}")


def alternate(
    run_a: Callable[[], T],
    run_b: Callable[[], T],
    *,
    rounds: int,
    key: Callable[[T], float],
) -> Comparison[T]:
    """Run A then B, ``rounds`` times, and return every result.

    The side that goes first swaps each round, so a warming or cooling machine
    does not always favour the same side.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds!r}")
    result: Comparison[T] = Comparison(key)
    for i in range(rounds):
        if i % 2 == 0:
            result.a.append(run_a())
            result.b.append(run_b())
        else:
            result.b.append(run_b())
            result.a.append(run_a())
    return result
