"""Fault benchmark: the long version of tests/reliability/test_faults.py.

Not a test: it runs many `nextround once` cycles under injected faults against its own
Dovecot, checks the invariants, prints a report and writes it to bench/results/faults.json
(with a timeline of every cycle and of what the simulated user and recruiters did).

    /work/venv/bin/python bench/faults.py                   # 1,000 cycles
    /work/venv/bin/python bench/faults.py --cycles 300 --seed 7
    NEXTROUND_FAULT_SEED=7 /work/venv/bin/python bench/faults.py --cycles 1000

The harness is tests/reliability/harness.py (see its docstring for the faults and the
invariants). It trains the classifier once into a temporary directory (about 20-30 s).
Exit status: 0 when no invariant was violated and no cycle failed uncleanly, else 1.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# `tests` holds dovecot.py, tcpproxy.py, mailclient.py and support.py, which the harness
# imports as top-level modules (as the tests do); the harness itself is `reliability.harness`.
sys.path.insert(0, str(REPO / "tests"))

from dovecot import Dovecot  # noqa: E402
from reliability.harness import (  # noqa: E402
    FaultRun,
    Options,
    seed_from_environment,
    train_model,
    write_json,
)

RESULTS = REPO / "bench" / "results" / "faults.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000, help="cycles (default 1000)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed (default: $NEXTROUND_FAULT_SEED, else a fixed one)",
    )
    parser.add_argument(
        "--no-tmpfs", action="store_true", help="no real disk-full on a tmpfs (injected only)"
    )
    parser.add_argument(
        "--reuse-model",
        action="store_true",
        help="in-process cycles reuse one loaded classifier, as the test does (faster); "
        "by default every cycle loads it from the state directory",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file ({RESULTS})")
    parser.add_argument("--progress", type=int, default=50, help="a line every N cycles")
    args = parser.parse_args(argv)

    seed = args.seed if args.seed is not None else seed_from_environment()
    options = Options(
        cycles=args.cycles,
        seed=seed,
        tmpfs=not args.no_tmpfs,
        reuse_model=args.reuse_model,
        progress_every=args.progress,
        log=functools.partial(print, flush=True),
    )
    with tempfile.TemporaryDirectory(prefix="nextround-faults-") as directory:
        workdir = Path(directory)
        model_dir = workdir / "model"
        started = time.monotonic()
        print("training the classifier once ...", flush=True)
        train_model(model_dir)
        print(f"  {time.monotonic() - started:.0f} s", flush=True)
        with Dovecot.start() as dovecot:
            user = dovecot.add_user("faults@example.org")
            report = FaultRun(dovecot, user, model_dir, workdir, options).run()
    print(report.summary())
    write_json(report, args.output)
    print(f"written to {args.output}")
    return 0 if not report.violations and not report.unclean and not report.leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
