"""Helpers shared by the integration tests (plain module; fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nextround.daemon.cli import main

# A plain interview-stage rejection from a person: (From, Subject, body).
INTERVIEW_REJECTION = (
    "Priya Raman <priya.raman@brightloom.io>",
    "Your application for Senior Data Engineer",
    "Hi Alex,\n\nThank you for taking the time to interview with our team last week for the "
    "Senior Data Engineer role at Brightloom. We enjoyed the conversations, but after careful "
    "consideration we have decided to move forward with another candidate whose experience "
    "more closely matches what we need right now.\n\nWe appreciate your interest in Brightloom "
    "and wish you the best in your search.\n\nBest,\nPriya Raman\nTalent Partner, Brightloom\n",
)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*argv: str) -> CliResult:
    """Run the CLI in-process, as a user would call it, capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse usage errors
            code = int(exit_.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


ConfigWriter = Callable[..., Path]
