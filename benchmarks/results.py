"""The benchmark report: load runs, ratios, goals and extra rows, rendered as Markdown.

:class:`Report` collects what a run measured and writes ``benchmarks/results/latest.md``.
Later benchmarks add their figures with :meth:`Report.add_row`, optionally against a
:class:`Goal`; the report shows each goal as met or not met, and by how much::

    report.add_row("AWS Lambda", "cold start / warm p50", 3.2, Goal(5.0, higher_is_better=False))
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.floor import FloorResult
from benchmarks.load import LoadResult

__all__ = ["SCENARIOS", "Goal", "LoadRun", "Report", "Row"]

# Scenario key -> title. Each scenario compares nodecert with cfssl at several concurrencies.
SCENARIOS = {
    "ec-newcert": "EC P-256, server keygen (nodecert /generate-cert vs cfssl newcert)",
    "ec-csr": "EC P-256 CSR signing (nodecert /generate-cert + csr vs cfssl sign)",
    "rsa-newcert": "RSA-2048, server keygen (nodecert /generate-cert vs cfssl newcert)",
}


@dataclass(frozen=True)
class Goal:
    """A target for one figure.

    Attributes:
        target: the value to reach.
        higher_is_better: True for "at least ``target``", False for "at most".
    """

    target: float
    higher_is_better: bool = True

    def met(self, value: float) -> bool:
        """Whether ``value`` reaches the target."""
        return value >= self.target if self.higher_is_better else value <= self.target

    def margin(self, value: float) -> str:
        """How far ``value`` is past (+) or short of (-) the target, relative to it."""
        better = value - self.target if self.higher_is_better else self.target - value
        if self.target == 0:
            return f"{better:+.3g}"
        return f"{better / abs(self.target):+.0%}"

    def __str__(self) -> str:
        return f"{'≥' if self.higher_is_better else '≤'} {_fmt(self.target)}"


@dataclass(frozen=True)
class Row:
    """One extra figure. ``value`` None means "not measured (yet)"."""

    section: str
    name: str
    value: float | str | None
    goal: Goal | str | None = None
    met: bool | None = None
    unit: str = ""
    note: str = ""

    @property
    def margin(self) -> str:
        """The goal's margin, where both the goal and the value are numbers."""
        if isinstance(self.goal, Goal) and isinstance(self.value, int | float):
            return self.goal.margin(float(self.value))
        return ""


@dataclass(frozen=True)
class LoadRun:
    """One load run: which scenario, against which server."""

    scenario: str
    server: str
    result: LoadResult


def _fmt(value: float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


@dataclass
class Report:
    """Everything one benchmark run measured, and its rendering as Markdown."""

    title: str = "nodecert benchmark"
    machine: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    runs: list[LoadRun] = field(default_factory=list)
    calibration: list[LoadResult] = field(default_factory=list)
    floor: FloorResult | None = None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_load(self, scenario: str, server: str, result: LoadResult) -> None:
        """Record one load run (``scenario`` is a key of :data:`SCENARIOS`)."""
        self.runs.append(LoadRun(scenario, server, result))

    def add_row(
        self,
        section: str,
        name: str,
        value: float | str | None,
        goal: Goal | str | None = None,
        met: bool | None = None,
        *,
        unit: str = "",
        note: str = "",
    ) -> Row:
        """Add one figure to the goals and extra figures table.

        Args:
            section: a heading such as "AWS Lambda" or "ACM PCA".
            name: what was measured.
            value: the figure; None when it was not measured.
            goal: a :class:`Goal` (then ``met`` is computed unless given) or a free text.
            met: whether the goal was met; None for "not judged".
            unit: printed after the value.
            note: how it was measured, or why it was not.
        """
        if met is None and isinstance(goal, Goal) and isinstance(value, int | float):
            met = goal.met(float(value))
        row = Row(section, name, value, goal, met, unit, note)
        self.rows.append(row)
        return row

    def add_note(self, text: str) -> None:
        """Add a line to the notes at the end of the report (whitespace collapsed)."""
        self.notes.append(" ".join(text.split()))

    def find(self, scenario: str, server: str, concurrency: int) -> LoadResult | None:
        """The result of one run, if it was made."""
        for run in self.runs:
            if (run.scenario, run.server, run.result.concurrency) == (
                scenario,
                server,
                concurrency,
            ):
                return run.result
        return None

    def ratio(self, scenario: str, concurrency: int) -> float | None:
        """nodecert req/s over cfssl req/s for one scenario and concurrency."""
        ours = self.find(scenario, "nodecert", concurrency)
        theirs = self.find(scenario, "cfssl", concurrency)
        if ours is None or theirs is None:
            return None
        return _ratio(ours.rps, theirs.rps)

    def generator_cpu_max(self) -> float:
        """The highest CPU share (of one core) the generator used in any run."""
        return max((run.result.cpu_share for run in self.runs), default=0.0)

    # -- rendering ----------------------------------------------------------------------

    def to_markdown(self) -> str:
        """The whole report."""
        out = [f"# {self.title}", ""]
        out += [f"- **{k}**: {v}" for k, v in self.settings.items()]
        out += ["", "## Machine", ""]
        out += _table(["", ""], [[k, v] for k, v in self.machine.items()])
        if self.runs:  # An extras-only run has no load runs: no empty tables.
            out += self._runs_section() + self._ratio_section()
        out += self._floor_section()
        if self.runs or self.calibration:
            out += self._generator_section()
        out += self._rows_section()
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(out) + "\n"

    def _runs_section(self) -> list[str]:
        out = ["", "## Throughput and latency", ""]
        header = ["scenario", "c", "server", "req/s", "p50 ms", "p99 ms", "errors", "n"]
        header.append("gen CPU")
        rows = []
        by_scenario: dict[str, list[LoadRun]] = defaultdict(list)
        for run in self.runs:
            by_scenario[run.scenario].append(run)
        for scenario, runs in by_scenario.items():
            for run in sorted(runs, key=lambda r: (r.result.concurrency, r.server != "nodecert")):
                r = run.result
                errors = str(r.errors)
                if r.error_kinds:
                    errors += " (" + ", ".join(f"{k}: {n}" for k, n in r.error_kinds.items()) + ")"
                rows.append(
                    [
                        scenario,
                        str(r.concurrency),
                        run.server,
                        _fmt(r.rps),
                        f"{r.p50_ms:.2f}",
                        f"{r.p99_ms:.2f}",
                        errors,
                        str(r.requests),
                        f"{r.cpu_share:.0%}",
                    ]
                )
        out += _table(header, rows)
        out += ["", "Scenarios:", ""] + [f"- `{k}`: {v}" for k, v in SCENARIOS.items()]
        out += [
            "",
            "`n` is the number of measured requests, `errors` counts every non-success",
            "(HTTP 429 included), `gen CPU` is the load generator's CPU over the run's wall",
            "time (share of one core).",
        ]
        return out

    def _ratio_section(self) -> list[str]:
        out = ["", "## nodecert / cfssl", ""]
        header = ["scenario", "c", "nodecert req/s", "cfssl req/s", "ratio req/s"]
        header += ["ratio p50", "ratio p99"]
        rows = []
        for scenario in SCENARIOS:
            for c in sorted({r.result.concurrency for r in self.runs if r.scenario == scenario}):
                ours = self.find(scenario, "nodecert", c)
                theirs = self.find(scenario, "cfssl", c)
                rows.append(
                    [
                        scenario,
                        str(c),
                        _fmt(ours.rps) if ours else "—",
                        _fmt(theirs.rps) if theirs else "—",
                        _fmt(_ratio(ours.rps, theirs.rps)) if ours and theirs else "—",
                        _fmt(_ratio(ours.p50_ms, theirs.p50_ms)) if ours and theirs else "—",
                        _fmt(_ratio(ours.p99_ms, theirs.p99_ms)) if ours and theirs else "—",
                    ]
                )
        out += _table(header, rows)
        out += ["", "Throughput ratio > 1: nodecert is faster; latency ratio < 1: nodecert is"]
        out += ["quicker. `—`: one side was not measured."]
        return out

    def _floor_section(self) -> list[str]:
        if self.floor is None:
            return []
        f = self.floor
        out = ["", "## RSA-2048 against the keygen floor", ""]
        out += [
            f"Floor: **{_fmt(f.keys_per_s)} keys/s**: {f.processes} processes generating",
            f"RSA-{f.bits} keys with pyca/cryptography for {_fmt(f.seconds)} s each, summed",
            f"({f.keys} keys). No server can issue server-keygen RSA certificates faster.",
            "",
        ]
        rows = []
        for c in sorted({r.result.concurrency for r in self.runs if r.scenario == "rsa-newcert"}):
            row = [str(c)]
            for server in ("nodecert", "cfssl"):
                result = self.find("rsa-newcert", server, c)
                row += (
                    [_fmt(result.rps), _fmt(_ratio(result.rps, f.keys_per_s))]
                    if result
                    else [
                        "—",
                        "—",
                    ]
                )
            rows.append(row)
        header = ["c", "nodecert req/s", "nodecert/floor", "cfssl req/s", "cfssl/floor"]
        return out + _table(header, rows)

    def _generator_section(self) -> list[str]:
        out = ["", "## Load generator", ""]
        top = self.generator_cpu_max()
        cores = os.cpu_count() or 1
        out += [
            f"Highest CPU share in any run: **{top:.0%} of one core** ({top / cores:.0%} of the",
            f"{cores}-core machine); it runs in its own process and never saturates its core.",
        ]
        if self.calibration:
            out += [
                "",
                "Calibration against a trivial loopback endpoint (its ceiling, and its CPU cost",
                "per request, which times a run's req/s gives its load on the machine):",
                "",
            ]
            rows = [
                [
                    r.engine,
                    str(r.concurrency),
                    _fmt(r.rps),
                    f"{r.cpu_share:.0%}",
                    _fmt(r.cpu_us_per_request),
                ]
                for r in self.calibration
            ]
            out += _table(["engine", "c", "req/s", "gen CPU", "CPU µs/request"], rows)
        return out

    def _rows_section(self) -> list[str]:
        if not self.rows:
            return []
        out = ["", "## Goals and extra figures", ""]
        header = ["section", "figure", "value", "goal", "met", "margin", "note"]
        rows = []
        for row in self.rows:
            value = _fmt(row.value) + (f" {row.unit}" if row.unit and row.value is not None else "")
            goal = str(row.goal) if row.goal is not None else "—"
            met = {True: "✅ met", False: "❌ not met", None: "—"}[row.met]
            if row.value is None:
                met = "pending"
            rows.append([row.section, row.name, value, goal, met, row.margin or "—", row.note])
        return out + _table(header, rows)

    def write(self, path: Path) -> None:
        """Write the Markdown report (atomically, via a ``.tmp`` file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_markdown())
        tmp.replace(path)
