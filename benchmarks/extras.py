"""Hooks for the figures that later benchmarks add to the same report.

Each hook is a function ``hook(context) -> None`` that measures something and calls
``context.report.add_row(section, name, value, goal, met)``. ``run.py`` calls every hook in
:data:`HOOKS` after the load scenarios, with nodecert still up; a hook that raises is
reported as a row with its error, and the run goes on.

The three below are placeholders until their measurements exist: they add a "pending" row,
so the report shows what is still to be measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cfssl_server import CFSSL
from benchmarks.nodecert_server import Nodecert
from benchmarks.results import Report

__all__ = ["HOOKS", "BenchContext", "Hook", "hook", "run_hooks"]


@dataclass(frozen=True)
class BenchContext:
    """What a hook may use.

    Attributes:
        args: the parsed command line of ``run.py`` (``args.quick`` for a smoke run).
        workdir: a temporary directory of this run, deleted at its end.
        report: where to add rows.
        nodecert: the running server, or None when it could not start.
        cfssl: None: cfssl is stopped after its runs (kept for hooks that start their own).
    """

    args: argparse.Namespace
    workdir: Path
    report: Report
    nodecert: Nodecert | None = None
    cfssl: CFSSL | None = None


Hook = Callable[[BenchContext], None]

HOOKS: list[Hook] = []


def hook(function: Hook) -> Hook:
    """Register ``function`` to run after the load scenarios (a decorator)."""
    HOOKS.append(function)
    return function


def run_hooks(context: BenchContext) -> None:
    """Run every hook; a failing hook becomes a row that says why."""
    for function in HOOKS:
        try:
            function(context)
        except Exception as exc:  # One broken hook must not lose the whole report.
            context.report.add_row(
                "hooks", function.__name__, None, note=f"failed: {type(exc).__name__}: {exc}"
            )


@hook
def lambda_cold_start(context: BenchContext) -> None:
    """AWS Lambda: cold-start over warm latency of the ``/generate-cert`` handler."""
    context.report.add_row(
        "AWS Lambda",
        "cold start / warm latency ratio",
        None,
        note="not measured yet (benchmarks/extras.py: lambda_cold_start)",
    )


@hook
def pca_path_overhead(context: BenchContext) -> None:
    """ACM PCA: the acmpca backend's own overhead per issuance, besides the AWS calls."""
    context.report.add_row(
        "ACM PCA",
        "acmpca path overhead per issuance",
        None,
        unit="ms",
        note="not measured yet (benchmarks/extras.py: pca_path_overhead)",
    )


@hook
def authorizer_decision_latency(context: BenchContext) -> None:
    """Authorizer: p99 time to allow or deny one request from its client certificate."""
    context.report.add_row(
        "authorizer",
        "decision latency p99",
        None,
        unit="ms",
        note="not measured yet (benchmarks/extras.py: authorizer_decision_latency)",
    )
