"""CPU time per hostile mail: the slowest cases of the hostile corpus, and of pathological shapes.

Not a test: it prints numbers. A mail that costs seconds of CPU stalls the cycle as surely as
one that crashes it, and no test can assert a time on a shared machine. This reads each case
as a cycle does, triage (`triage.read`, with the model) and then the full parse
(`parse_message`), and prints the slowest:

    /work/venv/bin/python bench/hostile_mail.py              # about 2 minutes
    /work/venv/bin/python bench/hostile_mail.py --top 20

Cases: the hostile corpus (tests/hostile/corpus.py, big ones included), then bodies made of one
short piece repeated (blank lines, `<!--`, `</`, dashes, quote markers, entities, ...) as
text/plain and as text/html, at 200 KB and 2 MB: the time should grow tenfold, not a hundredfold.
Linear but slow shows as a large time at both sizes; quadratic, as a ratio far above 10.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hostile.corpus import CASES, REJECTION_BODY  # noqa: E402

from nextround.classifier.inference import RejectionModel  # noqa: E402
from nextround.daemon import triage  # noqa: E402
from nextround.daemon.config import DEFAULT_THRESHOLD  # noqa: E402
from nextround.daemon.errors import MessageParseError  # noqa: E402
from nextround.daemon.parse import parse_message  # noqa: E402
from nextround.daemon.training import ModelSettings, get_model  # noqa: E402

USER = "alex@example.org"
SIZES = (200_000, 2_000_000)
PIECES = (
    *("\n", "\r\n", " \n", "\t", "--\n", "-", "_", "a\n", "a ", "On ", "Am schrieb ", "wrote: "),
    *("<", ">", "&", "&amp;", "&#", "<p>", "<br>", "<div>", "</", "<!--", "<![", "<?", "<a b='"),
    *("@", "a@b.", "http://", "www.", "\u00e9", "\u00e9a", "Dear ", "team at ", "position "),
)


def cpu(action: Callable[[], object]) -> float:
    started = time.process_time()
    with contextlib.suppress(MessageParseError):  # skipped with a reason: still timed
        action()
    return time.process_time() - started


def read(raw: bytes, model: RejectionModel) -> tuple[float, float]:
    """CPU seconds of triage and of the full parse."""
    return cpu(lambda: triage.read([(raw, False)], model, USER)), cpu(lambda: parse_message(raw))


def message(body: str, html: bool) -> bytes:
    kind = b"text/html" if html else b"text/plain"
    return (
        b"From: Jane Recruiter <jane@acme.example>\r\nTo: " + USER.encode() + b"\r\n"
        b"Subject: Your application\r\nMessage-ID: <shape@hostile.test>\r\n"
        b"Content-Type: " + kind + b"; charset=utf-8\r\n\r\n" + body.encode("utf-8")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--top", type=int, default=12, help="how many of the slowest to print")
    args = parser.parse_args(argv)
    logging.disable(logging.ERROR)  # mail-parser's complaints about each odd case
    with tempfile.TemporaryDirectory() as work:
        model = get_model(ModelSettings(state_dir=Path(work), threshold=DEFAULT_THRESHOLD))
        read(message(REJECTION_BODY, False), model)  # warm: caches, lazily built tables
        rows: list[tuple[float, str]] = []
        started = time.perf_counter()
        for case in CASES:
            triaged, parsed = read(case.build(), model)
            rows.append((triaged + parsed, f"corpus {case.name}"))
        print(f"hostile corpus: {len(CASES)} cases in {time.perf_counter() - started:.1f} s")
        slowest_shape = 0.0
        for piece in PIECES:
            for html in (False, True):
                times = []
                for size in SIZES:
                    body = REJECTION_BODY + piece * (size // len(piece))
                    times.append(sum(read(message(body, html), model)))
                growth = times[1] / max(times[0], 1e-9)
                name = f"shape {piece!r} as {'HTML' if html else 'text'}: "
                name += f"{times[0] * 1000:,.0f} ms at 200 KB, x{growth:.0f} at 2 MB"
                rows.append((times[1], name))
                slowest_shape = max(slowest_shape, times[1])
                if times[0] > 0.005 and growth > 30:
                    print(f"  NOT LINEAR: {name}")
        print(f"shapes: {len(PIECES) * 2}, the slowest at 2 MB: {slowest_shape:.2f} s")
    rows.sort(reverse=True)
    print(f"\nthe {args.top} slowest (triage + full parse, CPU):")
    for seconds, name in rows[: args.top]:
        print(f"  {seconds * 1000:>9,.0f} ms  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
