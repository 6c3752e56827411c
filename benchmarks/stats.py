"""Statistics and the markdown table: medians, min-max spreads, ratios paired within a run.

Every compared quantity is measured in interleaved repetitions (A B A B ...). A ratio is taken
*within* each repetition (``a[i] / b[i]``) and then summarised, so slow drifts of a noisy
machine (other jobs starting and stopping) cancel instead of biasing the ratio.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Median and spread (min-max) of repeated measurements."""

    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def clean(values: Sequence[float | None]) -> list[float]:
    """The finite values (a repetition that failed is recorded as None or NaN)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def summarize(values: Sequence[float | None]) -> Summary | None:
    """Median and min-max of the finite values; None if there are none."""
    data = clean(values)
    if not data:
        return None
    return Summary(statistics.median(data), min(data), max(data), len(data))


def paired_ratios(numerator: Sequence[float | None], denominator: Sequence[float | None]) -> list:
    """``numerator[i] / denominator[i]`` for each repetition where both are usable."""
    if len(numerator) != len(denominator):
        raise ValueError(f"unpaired samples: {len(numerator)} vs {len(denominator)}")
    ratios = []
    for a, b in zip(numerator, denominator, strict=True):
        if a is None or b is None:
            continue
        a, b = float(a), float(b)
        if math.isfinite(a) and math.isfinite(b) and b > 0:
            ratios.append(a / b)
    return ratios


def ratio_summary(
    numerator: Sequence[float | None], denominator: Sequence[float | None]
) -> Summary | None:
    return summarize(paired_ratios(numerator, denominator))


def fmt_number(value: float, digits: int = 3) -> str:
    """A compact number: 3 significant digits, no exponent for everyday magnitudes."""
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    if magnitude >= 6 or magnitude < -4:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{decimals}f}"


def fmt_summary(summary: Summary | None, unit: str = "", scale: float = 1.0) -> str:
    """``median (min-max) unit``, e.g. ``4.12 (3.90-5.01) ms``; an em dash when missing."""
    if summary is None:
        return "—"
    text = (
        f"{fmt_number(summary.median * scale)} "
        f"({fmt_number(summary.low * scale)}-{fmt_number(summary.high * scale)})"
    )
    return f"{text} {unit}".rstrip()


def fmt_ratio(summary: Summary | None) -> str:
    if summary is None:
        return "—"
    return (
        f"{summary.median:.3f} ({summary.low:.3f}-{summary.high:.3f})"
        if summary.median < 10
        else fmt_summary(summary)
    )


def verdict(summary: Summary | None, goal: float | None, lower_is_better: bool = True) -> str:
    """Whether the median meets a goal: ``yes``/``no``, or empty without a goal."""
    if goal is None or summary is None:
        return ""
    ok = summary.median <= goal if lower_is_better else summary.median >= goal
    return "yes" if ok else "**no**"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; pipes inside cells are escaped."""

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header {len(header)}: {row!r}")
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines)
