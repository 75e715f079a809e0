"""Triage's cheap reading of new mail: headers and the start of the text (`parse_quick`), and
the classifier on the first TRIAGE_TEXT characters, a batch at a time.

A first sync reads thousands of messages. There the reading runs in a helper process, one
batch ahead of the cycle: while the helper reads a batch, the cycle fetches the next and
records the one before. Run as a program, this module is that helper:

    python -P -m nextround.daemon.triage MODEL_FILE FINGERPRINT THRESHOLD USER_ADDRESS

It loads the stored model (its signature checked, as always, and its fingerprint the
daemon's: a model retrained meanwhile is refused), then reads pickled batches of
(raw message, truncated) on stdin and writes each batch's readings to stdout, until stdin
closes. Both ends are this installation's own processes, connected by pipes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import select
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from nextround.classifier.inference import Prediction, RejectionModel
from nextround.classifier.message import Message
from nextround.daemon.parse import parse_quick

logger = logging.getLogger(__name__)

# Triage reads this much of the text: a rejection says what it is early. On the held-out
# split, 500 characters leave no more job mail under the floor than 1,000 (one mail, which
# the full classification misses too); bench/classify_eval.py prints the count.
TRIAGE_TEXT = 600

PIPE_BYTES = 1 << 20  # Linux allows this much to an unprivileged process
RECEIVE_SECONDS = 120.0
Raw = tuple[bytes, bool]  # (the message as fetched, whether it was cut at the size limit)
Reading = tuple[Message, Prediction | None]  # None: read for its headers, not classified
T = TypeVar("T")


def read(raws: Sequence[Raw], model: RejectionModel | None, user: str) -> list[Reading | None]:
    """Each message read cheaply, with the classifier's view of its start when `model` is
    given; None for a message the cheap reading does not read (the full parse will)."""
    messages = [_quick(raw, truncated) for raw, truncated in raws]
    readable = [message for message in messages if message is not None]
    predictions = iter(prefix_predictions(model, readable, user) if model else [])
    return [
        None if message is None else (message, next(predictions) if model else None)
        for message in messages
    ]


def prefix_predictions(
    model: RejectionModel, messages: Sequence[Message], user: str
) -> list[Prediction]:
    prefixes = [replace(message, text=message.text[:TRIAGE_TEXT]) for message in messages]
    return model.predict(prefixes, [user])


def _quick(raw: bytes, truncated: bool) -> Message | None:
    try:
        return parse_quick(raw, truncated=truncated)
    except Exception:  # noqa: BLE001 - what the cheap reading trips on, the full parse handles
        return None


class Helper:
    """The helper process; `None` from `start` when it cannot run (the caller reads itself)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(cls, model: RejectionModel, user: str) -> Helper | None:
        if model.source is None or model.fingerprint is None:
            return None  # not loaded from a file: nothing a helper could load
        # -P: never import from the working directory (python -m would put it on the path).
        command = [sys.executable, "-P", "-m", __name__, str(model.source), model.fingerprint]
        command += [repr(model.threshold), user]
        try:
            process = subprocess.Popen(  # our own interpreter and module, no shell
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        except OSError as error:
            logger.warning("reading this sync in this process: no helper (%s)", error)
            return None
        for pipe in (process.stdin, process.stdout):
            # A batch is megabytes: with 64 KB pipes, the two processes take turns 4x slower.
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[union-attr]
        return cls(process)

    def send(self, raws: list[Raw]) -> None:
        assert self.process.stdin is not None  # noqa: S101 - opened with a pipe
        pickle.dump(raws, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.process.stdin.flush()

    def receive(self) -> list[Reading | None]:
        assert self.process.stdout is not None  # noqa: S101 - opened with a pipe
        # It writes a batch's readings all at once, when they are done: if nothing comes for
        # this long, it is stuck, and the cycle must not wait for it forever.
        ready, _, _ = select.select([self.process.stdout], [], [], RECEIVE_SECONDS)
        if not ready:
            raise TimeoutError(f"no answer in {RECEIVE_SECONDS:.0f} s")
        # Safe: our own child process, started above, wrote these bytes to our pipe.
        readings: list[Reading | None] = pickle.load(self.process.stdout)  # noqa: S301
        return readings

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        # First let it see the closed pipes, then ask it to stop, then insist.
        for end in (None, self.process.terminate, self.process.kill):
            if end is not None:
                end()
            try:
                self.process.wait(timeout=2)
                return
            except subprocess.TimeoutExpired:
                continue


def read_ahead(
    batches: Iterable[list[T]],
    raws: Callable[[list[T]], list[Raw]],
    local: Callable[[list[Raw]], list[Reading | None]],
    helper: Helper | None,
) -> Iterator[tuple[list[T], list[Reading | None]]]:
    """Each batch with its readings, in order. With a helper, batch k+1 goes to it before
    batch k is yielded, so it reads while the caller works. One batch at a time is in the
    pipes (a second would deadlock them). If the helper fails, this process reads the rest:
    a batch is yielded only with its readings, so nothing is lost."""
    pending: list[T] | None = None  # sent to the helper, not yet received
    try:
        for batch in batches:
            if helper is not None:
                try:
                    done = None if pending is None else (pending, helper.receive())
                    helper.send(raws(batch))
                except Exception as error:  # noqa: BLE001 - any failure of the helper: read here
                    _give_up(helper, error)
                    helper = None
                else:
                    if done is not None:
                        yield done
                    pending = batch
                    continue
            for unread in [*([pending] if pending is not None else []), batch]:
                yield unread, local(raws(unread))
            pending = None
        if pending is not None and helper is not None:
            try:
                readings = helper.receive()
            except Exception as error:  # noqa: BLE001 - any failure of the helper: read here
                _give_up(helper, error)
                helper = None
                readings = local(raws(pending))
            yield pending, readings
    finally:
        if helper is not None:
            helper.close()


def _give_up(helper: Helper, error: Exception) -> None:
    logger.warning("the triage helper failed (%s); reading in this process", error)
    helper.close()


def _main(argv: list[str]) -> int:
    from nextround.classifier.persist import ModelFileError, load_model

    try:
        model = load_model(Path(argv[0]), argv[1])  # the daemon's model, or none at all
    except ModelFileError as error:
        print(f"nextround triage helper: {error}", file=sys.stderr)
        return 2
    model.threshold = float(argv[2])
    user = argv[3]
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            # Safe: our parent process, the only writer of this pipe.
            raws = pickle.load(source)  # noqa: S301
        except EOFError:
            return 0
        try:
            pickle.dump(read(raws, model, user), sink, protocol=pickle.HIGHEST_PROTOCOL)
            sink.flush()
        except BrokenPipeError:  # the cycle stopped (or failed) and closed its end: so do we
            # Python's advice: point stdout at devnull, or its flush at exit fails again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
