"""The benchmarks' statistics and table code (the benchmarks themselves are not run here)."""

from __future__ import annotations

import math

import pytest

from benchmarks import stats


def test_summary_is_median_and_min_max_of_finite_values():
    summary = stats.summarize([3.0, None, 1.0, math.nan, 2.0, 10.0])
    assert summary == stats.Summary(median=2.5, low=1.0, high=10.0, n=4)
    assert stats.summarize([None, math.nan]) is None


def test_ratios_are_paired_within_a_repetition():
    ours = [1.0, 2.0, None, 4.0]
    theirs = [2.0, 2.0, 5.0, 0.0]  # a zero denominator is skipped, as is a failed run
    assert stats.paired_ratios(ours, theirs) == [0.5, 1.0]
    # the median of paired ratios, not the ratio of medians
    summary = stats.ratio_summary([1.0, 10.0, 3.0], [1.0, 20.0, 1.0])
    assert summary is not None and summary.median == 1.0
    assert (summary.low, summary.high) == (0.5, 3.0)
    with pytest.raises(ValueError, match="unpaired"):
        stats.paired_ratios([1.0], [1.0, 2.0])


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (0.004481, "0.00448"), (15.63, "15.6"), (226.4, "226"), (2.149, "2.15")],
)
def test_numbers_have_three_significant_digits(value, text):
    assert stats.fmt_number(value) == text


def test_formatting_and_verdicts():
    summary = stats.Summary(0.0045, 0.004, 0.006, 7)
    assert stats.fmt_summary(summary, "ms", 1e3) == "4.50 (4.00-6.00) ms"
    assert stats.fmt_summary(None) == "—"
    assert stats.fmt_ratio(stats.Summary(1.0234, 1.0, 1.1, 7)) == "1.023 (1.000-1.100)"
    assert stats.verdict(summary, 0.010) == "yes"
    assert stats.verdict(summary, 0.001) == "**no**"
    assert stats.verdict(summary, None) == ""


def test_markdown_table():
    table = stats.markdown_table(["a", "b"], [["1", "x|y"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x\\|y |"]
    with pytest.raises(ValueError):
        stats.markdown_table(["a", "b"], [["1"]])
