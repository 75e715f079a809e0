"""~200 `nextround once` cycles under injected faults (process kills, Dovecot down, cut and
stalled connections, a locked and a full state database) while mail keeps arriving; then the
invariants: one request draft per rejection, nothing processed twice, no rejection lost, an
intact database. See `harness.py`; `bench/faults.py --cycles 1000` is the long version.

The seed is printed and can be set with NEXTROUND_FAULT_SEED. Run with `-s` to see the report.
"""

from __future__ import annotations

import threading
from pathlib import Path

from dovecot import Dovecot, MailUser
from reliability.harness import SHARES, FaultRun, Kind, Options, seed_from_environment

CYCLES = 200


def test_invariants_hold_under_faults(
    dovecot: Dovecot, mailbox_user: MailUser, trained_model: Path, tmp_path: Path
) -> None:
    threads_before = {thread.ident for thread in threading.enumerate()}
    options = Options(cycles=CYCLES, seed=seed_from_environment())
    try:
        report = FaultRun(dovecot, mailbox_user, trained_model, tmp_path, options).run()
    finally:
        if not dovecot.running:  # the fixture is shared by the whole session
            dovecot.restart()
    print(report.summary())

    # The harness left nothing behind, and the shared Dovecot serves again.
    assert report.leftovers == []
    assert [
        thread.name
        for thread in threading.enumerate()
        if thread.ident not in threads_before and thread.is_alive()
    ] == []
    assert dovecot.running
    assert mailbox_user.exists("INBOX") > 0

    # Every kind of fault was injected and actually hit a running cycle.
    assert report.cycles >= 200
    expected = [kind for kind in SHARES if kind is not Kind.DISK_FULL_TMPFS or report.tmpfs]
    assert [kind.value for kind in expected if report.fired[kind] == 0] == [], report.fired
    assert report.results["killed"] > 0 and report.results["failed_cleanly"] > 0
    assert report.results["succeeded"] > report.cycles // 4

    # The point of it all.
    assert report.unclean == [], "cycles that failed without a clean one-line error"
    assert report.violations == [], f"{len(report.violations)} invariant violation(s)"
