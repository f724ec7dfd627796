"""benchmarks/interleaved.py's report: medians per build and HEAD's change, per round."""

from __future__ import annotations

from benchmarks.interleaved import Figure, summary


def test_the_summary_gives_each_round_and_the_change_of_the_medians() -> None:
    figures = [
        Figure(1, "base", 16, 1000.0, 1.0),
        Figure(1, "HEAD", 16, 900.0, 1.2),
        Figure(2, "base", 16, 1200.0, 0.9),
        Figure(2, "HEAD", 16, 1000.0, 1.0),
        Figure(3, "base", 16, 1100.0, 0.8),
        Figure(3, "HEAD", 16, 1300.0, 0.9),
    ]
    text = summary(figures, [16], ["base", "HEAD"])
    assert "| 16 | base | 1,100 | 0.900 | 1,000, 1,200, 1,100 | 1.000, 0.900, 0.800 |" in text
    assert "| 16 | HEAD | 1,000 | 1.000 | 900, 1,000, 1,300 | 1.200, 1.000, 0.900 |" in text
    assert text.endswith("c=16: HEAD req/s -9.1%, CPU per certificate +11.1% against base")
