"""Instructions per message of triage's reading, counted by valgrind (callgrind).

Not a test: it prints numbers. The machines this runs on are shared and their speed swings by
half between minutes, so CPU seconds cannot show a change of a few percent; the number of
instructions a piece of code executes does not depend on the load, and shows it.

    /work/venv/bin/python bench/instructions.py                # 2,000 messages
    /work/venv/bin/python bench/instructions.py --messages 500

It trains (or reuses) the model outside valgrind, then runs itself under callgrind with
counting off, generates the bench's mail (bench/sync.py's MessageFactory), warms up, and
counts only the measured calls: the quick reading of each message, the screen and classifier
on the starts of the text, and `triage.read` as a whole (quick reading, screen, full reads of
what the screen does not rule out). Needs valgrind (`apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

PARTS = ("quick reading", "screen and classifier on the start", "triage.read, all of it")
USER = "me@example.org"
T = TypeVar("T")


def _counted(action: Callable[[T], None], argument: T) -> None:
    """Run `action(argument)` with callgrind counting (this process runs under valgrind)."""
    toggle = ["callgrind_control", "--instr"]
    subprocess.run([*toggle, "on", str(os.getpid())], check=True, capture_output=True)
    action(argument)
    subprocess.run([*toggle, "off", str(os.getpid())], check=True, capture_output=True)


def child(part: int, count: int, state_dir: Path) -> None:
    from sync import SEED, MessageFactory  # bench/sync.py

    from nextround.classifier.inference import text_start
    from nextround.classifier.message import Message
    from nextround.daemon import triage
    from nextround.daemon.config import DEFAULT_THRESHOLD
    from nextround.daemon.training import ModelSettings, get_model

    model = get_model(ModelSettings(state_dir=state_dir, threshold=DEFAULT_THRESHOLD))
    factory = MessageFactory(SEED + 10_000, USER, datetime(2026, 11, 1, tzinfo=UTC))
    raws = [(raw, False) for raw in factory.messages(count + 200)]
    warm, raws = raws[:200], raws[200:]
    batches = [raws[i : i + 200] for i in range(0, len(raws), 200)]

    def quick(raws: list[tuple[bytes, bool]]) -> None:
        for raw, truncated in raws:
            triage._quick(raw, truncated)

    def screen(batches: list[list[Message]]) -> None:
        for batch in batches:
            triage.prefix_predictions(model, batch, USER)

    def read(batches: list[list[tuple[bytes, bool]]]) -> None:
        for batch in batches:
            triage.read(batch, model, USER)

    read([warm])  # caches and lazily built tables, as in a running helper
    if part == 0:
        _counted(quick, raws)
    elif part == 1:
        messages = [triage._quick(raw, truncated) for raw, truncated in raws]
        starts = [text_start(message) for message in messages if message is not None]
        _counted(screen, [starts[i : i + 200] for i in range(0, len(starts), 200)])
    else:
        _counted(read, batches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--part", type=int, help=argparse.SUPPRESS)  # the child under valgrind
    parser.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part is not None:
        child(args.part, args.messages, args.state_dir)
        return 0
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("bench/instructions.py needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    from nextround.daemon.config import DEFAULT_THRESHOLD
    from nextround.daemon.training import ModelSettings, get_model

    with tempfile.TemporaryDirectory(prefix="nextround-instructions-") as work:
        state_dir = Path(work) / "model"
        get_model(ModelSettings(state_dir=state_dir, threshold=DEFAULT_THRESHOLD))  # trained here
        print(f"instructions per message, {args.messages:,} bench messages (callgrind)")
        for part, name in enumerate(PARTS):
            command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            command += ["--callgrind-out-file=/dev/null", sys.executable, __file__]
            command += ["--part", str(part), "--messages", str(args.messages)]
            command += ["--state-dir", str(state_dir)]
            run = subprocess.run(command, capture_output=True, text=True, check=False)
            found = re.search(r"Collected : (\d+)", run.stderr)
            if run.returncode != 0 or found is None:
                print(run.stderr[-2000:], file=sys.stderr)
                return 1
            print(f"  {name:<36} {int(found.group(1)) / args.messages:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
