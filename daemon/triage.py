"""How new mail is read, a batch at a time. Each message is read cheaply first: headers and the
start of the text (`parse_quick`), and the model's screen on its first TRIAGE_TEXT
characters, which rules out most mail as job mail from its words alone. What it does not
rule out the classifier reads on the same start (character n-grams too), and what that
does not rule out is read in full: parsed (by the quick reading itself when the whole
message fits its prefix: it reads what mail-parser reads), classified on all its text, and
what it names extracted.

A first sync reads thousands of messages. There the reading runs in a helper process, ahead
of the cycle: while its readers read, the cycle fetches the next batches and records the
ones before. Run as a program, this module is that helper:

    python -P -m nextround.daemon.triage MODEL_FILE FINGERPRINT THRESHOLD USER_ADDRESS [FDS]

It loads the stored model (its signature checked, as always, and its fingerprint the
daemon's: a model retrained meanwhile is refused). Then it forks a reader for each pair of
pipe descriptors in FDS ("in,out,in,out..."), and each reader, itself included (stdin and
stdout), reads pickled batches of (raw message, truncated) and writes each batch's readings
back, until its input closes. Both ends are this installation's own processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from nextround.classifier.extract import domain_key, extract, extract_company, human_writers
from nextround.classifier.inference import START_CHARS, Prediction, RejectionModel, text_start
from nextround.classifier.message import Address, Message
from nextround.classifier.verdict import JOB_LABELS, company_key
from nextround.daemon.parse import QUICK_PREFIX, parse_message, parse_quick

logger = logging.getLogger(__name__)

TRIAGE_TEXT = START_CHARS

# Below this chance of being job mail (rejection or closed), a message is not parsed in full:
# far under the rejection threshold, so what the full parse would add cannot change a verdict.
TRIAGE_FLOOR = 0.1

PIPE_BYTES = 1 << 20  # Linux allows this much to an unprivileged process
RECEIVE_SECONDS = 120.0
READY = "ready"  # what each reader says first, once the model is loaded
Raw = tuple[bytes, bool]  # (the message as fetched, whether it was cut at the size limit)
T = TypeVar("T")


@dataclass(frozen=True)
class Reading:
    """How triage read one message.

    Mail the start of its text rules out as job mail is read cheaply: its `message` keeps only
    that start of the text (nothing after triage reads more). The rest is read `full`: parsed
    in full (mail-parser) and classified on all of it, with what it names extracted: (company,
    role) for job mail, (company, None) for other job-like mail a person wrote (a recruiter's),
    for their contact.
    """

    message: Message
    prediction: Prediction | None = None  # None: read for its headers, not classified
    full: bool = False
    extracted: tuple[str | None, str | None] | None = None
    # The people who wrote it, each with the company key to file them under and whether that
    # key is a guess: the company read out of the text of job-like mail read in full, else
    # their domain's (`domain_key`), a guess.
    contacts: tuple[tuple[Address, str, bool], ...] = ()


def floor(threshold: float) -> float:
    return min(TRIAGE_FLOOR, threshold / 2)  # a threshold set very low wins


def screen_floor(threshold: float) -> float:
    """Half the floor: the screen reads words alone, so it is held further from job mail. On
    the held-out split the lowest job mail it scores is twice this, and it lets 16% of
    ordinary mail (ham-500) on to the classifier; bench/classify_eval.py prints both."""
    return floor(threshold) / 2


def read(raws: Sequence[Raw], model: RejectionModel | None, user: str) -> list[Reading | None]:
    """Each message read as cheaply as it allows, classified when `model` is given; None for
    a message only the cycle's own full parse may read (it records why it cannot). Without
    a model (sent copies) the text is read whole: a copy is matched to its draft by it."""
    if model is None:
        found = [_quick(raw, truncated, None) for raw, truncated in raws]
        return [None if message is None else Reading(message) for message in found]
    messages = [_quick(raw, truncated) for raw, truncated in raws]
    starts = {i: text_start(message) for i, message in enumerate(messages) if message is not None}
    on_start = dict(
        zip(starts, prefix_predictions(model, list(starts.values()), user), strict=True)
    )
    lowest = floor(model.threshold)
    readings: list[Reading | None] = []
    deeper = []
    for index, message in enumerate(messages):
        prediction = on_start.get(index)
        if message is None or prediction is None or job_chance(prediction) >= lowest:
            deeper.append(index)
            readings.append(None)
        else:
            contacts = _guessed(human_writers(message, user))
            readings.append(Reading(starts[index], prediction, contacts=contacts))
    parsed = [(index, _full(*raws[index])) for index in deeper]
    found = [(index, message) for index, message in parsed if message is not None]
    in_full = model.predict([message for _, message in found], [user])
    for (index, message), prediction in zip(found, in_full, strict=True):
        with contextlib.suppress(Exception):  # the cycle reads it again, and says why it fails
            readings[index] = read_fully(message, prediction, user, lowest)
    return readings


def screened_out(chance: float) -> Prediction:
    """The prediction for mail the screen rules out: other mail. Its `score` is the screen's
    chance that it is job mail at all, not the label model's chance of a rejection."""
    return Prediction(
        label="other",
        is_rejection=False,
        score=round(chance, 4),
        stage=None,
        no_feedback_policy=False,
        probabilities={"other": 1.0 - chance},
    )


def job_chance(prediction: Prediction) -> float:
    return 1.0 - prediction.probabilities.get("other", 0.0)


def prefix_predictions(
    model: RejectionModel, messages: Sequence[Message], user: str
) -> list[Prediction]:
    """What triage decides from the start of each message's text: the screen's verdict where
    it rules the mail out, else the classifier's on that start."""
    chances, classified = model.screened(messages, screen_floor(model.threshold), [user])
    return [
        classified.get(index) or screened_out(float(chance)) for index, chance in enumerate(chances)
    ]


def _quick(raw: bytes, truncated: bool, text_chars: int | None = TRIAGE_TEXT) -> Message | None:
    try:
        return parse_quick(raw, truncated=truncated, text_chars=text_chars)
    except Exception:  # noqa: BLE001 - what the cheap reading trips on, the full parse handles
        return None


def _full(raw: bytes, truncated: bool) -> Message | None:
    try:
        if len(raw) <= QUICK_PREFIX and (message := parse_quick(raw, truncated=truncated)):
            return message  # what parse_message reads (the tests hold the two to it), faster
        return parse_message(raw, truncated=truncated)
    except Exception:  # noqa: BLE001 - the cycle parses it again, and records why it fails
        return None


def read_fully(message: Message, prediction: Prediction, user: str, lowest: float) -> Reading:
    """A message parsed in full and classified on all its text, with what it names: company
    and role of job mail, and the company of other mail a person wrote that is job-like even
    in full (a chance of job mail of at least `lowest`, the triage floor), for their contact.
    The writers of the rest are filed under their domain, as mail ruled out on its start is:
    reading a company out of a text costs more than everything else done with a message."""
    writers = human_writers(message, user)
    extracted: tuple[str | None, str | None]
    if prediction.label in JOB_LABELS:
        extracted = extract(message)
    elif writers and job_chance(prediction) >= lowest:
        extracted = (extract_company(message), None)
    else:
        return Reading(message, prediction, full=True, contacts=_guessed(writers))
    key = company_key(extracted[0])
    contacts = tuple((writer, key, False) for writer in writers)
    return Reading(message, prediction, full=True, extracted=extracted, contacts=contacts)


def _guessed(writers: Sequence[Address]) -> tuple[tuple[Address, str, bool], ...]:
    """Writers filed under their domain's name, a guess (`domain_key`)."""
    return tuple((writer, domain_key(writer), True) for writer in writers)


class Helper:
    """One reader of the helper process, and the pair of pipes to it.

    The helper process loads the model once, then forks its other readers: they share what it
    loaded (and the start-up, a good part of a second of CPU), each with pipes of its own.
    """

    def __init__(self, process: subprocess.Popen[bytes], to: IO[bytes], back: IO[bytes]) -> None:
        self.process = process
        self.to, self.back = to, back
        self._started = False

    @classmethod
    def start(cls, model: RejectionModel, user: str, readers: int = 1) -> list[Helper]:
        """The helper process's readers; none when it cannot run (the caller reads itself)."""
        if model.source is None or model.fingerprint is None:
            return []  # not loaded from a file: nothing a helper could load
        opened: list[int] = []  # per reader but the first: (r, w) to it, (r, w) back
        try:
            for _ in range(2 * (readers - 1)):
                opened.extend(os.pipe())
            pipes = [(opened[i : i + 2], opened[i + 2 : i + 4]) for i in range(0, len(opened), 4)]
            theirs = [fd for there, back in pipes for fd in (there[0], back[1])]
            # -P: never import from the working directory (python -m puts it on the path).
            command = [sys.executable, "-P", "-m", __name__, str(model.source), model.fingerprint]
            command += [repr(model.threshold), user, ",".join(map(str, theirs))]
            process = subprocess.Popen(  # our own interpreter and module, no shell
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=theirs
            )
        except OSError as error:
            for fd in opened:
                os.close(fd)
            logger.warning("reading this sync in this process: no helper (%s)", error)
            return []
        for fd in theirs:
            os.close(fd)  # the helper has them now
        assert process.stdin is not None and process.stdout is not None  # noqa: S101 - piped
        ends = [(process.stdin, process.stdout)]
        ends += [(os.fdopen(there[1], "wb"), os.fdopen(back[0], "rb")) for there, back in pipes]
        for pipe in (pipe for pair in ends for pipe in pair):
            # A batch is megabytes: with 64 KB pipes, the two processes take turns 4x slower.
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        return [cls(process, to, fro) for to, fro in ends]

    def started(self, wait: float = 0.0) -> bool:
        """Whether it has loaded the model and reads (it says so first); raises if it died."""
        if not self._started and select.select([self.back], [], [], wait)[0]:
            # Safe: our own child process, started above, wrote these bytes to our pipe.
            said = pickle.load(self.back)  # noqa: S301
            if said != READY:
                raise RuntimeError(f"the helper said {said!r}, not that it is ready")
            self._started = True
        return self._started

    def send(self, raws: list[Raw]) -> None:
        pickle.dump(raws, self.to, protocol=pickle.HIGHEST_PROTOCOL)
        self.to.flush()

    def receive(self) -> list[Reading | None]:
        # It writes a batch's readings all at once, when they are done: if nothing comes for
        # this long, it is stuck, and the cycle must not wait for it forever.
        ready, _, _ = select.select([self.back], [], [], RECEIVE_SECONDS)
        if not ready:
            raise TimeoutError(f"no answer in {RECEIVE_SECONDS:.0f} s")
        # A batch's readings are thousands of objects, made at once: each few hundred would
        # start a collection, and they cost more than the unpickling (they hold no cycles).
        collecting = gc.isenabled()
        gc.disable()
        try:
            # Safe: our own child process, started above, wrote these bytes to our pipe.
            readings: list[Reading | None] = pickle.load(self.back)  # noqa: S301
        finally:
            if collecting:
                gc.enable()
        return readings


def stop(helpers: Sequence[Helper]) -> None:
    """Close every reader's pipes, then end their process: let it see the closed pipes first
    (each reader stops at the end of its input), then ask it to stop, then insist."""
    for helper in helpers:
        for pipe in (helper.to, helper.back):
            with contextlib.suppress(OSError):
                pipe.close()
    for process in {id(helper.process): helper.process for helper in helpers}.values():
        for end in (None, process.terminate, process.kill):
            if end is not None:
                end()
            try:
                process.wait(timeout=2)
                break
            except subprocess.TimeoutExpired:
                continue


def read_ahead(
    batches: Iterable[list[T]],
    raws: Callable[[list[T]], list[Raw]],
    local: Callable[[list[Raw]], list[Reading | None]],
    helpers: Sequence[Helper],
) -> Iterator[tuple[list[T], list[Reading | None]]]:
    """Each batch with its readings, in order. Each helper reads one batch at a time (a second
    in its pipes would deadlock them); the next batch goes to a helper before the oldest is
    yielded, so they read while the caller works. If a helper fails, this process reads the
    rest: a batch is yielded only with its readings, so nothing is lost."""
    helping = list(helpers)
    waiting: deque[tuple[list[T], Helper]] = deque()  # sent to a helper, not yet received
    try:
        for batch in batches:
            if helping:
                done = None
                try:
                    started = [helper for helper in helping if helper.started()]
                    if not started:
                        # They are still loading (most of a second): this process reads
                        # meanwhile rather than wait. Nothing is waiting, so order holds.
                        yield batch, local(raws(batch))
                        continue
                    if len(waiting) == len(started):  # all are reading: take the oldest's
                        oldest, helper = waiting[0]
                        done = (oldest, helper.receive())
                        waiting.popleft()
                    else:
                        helper = next(h for h in started if all(h is not w for _, w in waiting))
                    helper.send(raws(batch))
                    waiting.append((batch, helper))
                    batch = []
                except Exception as error:  # noqa: BLE001 - any failure of a helper: read here
                    _give_up(helping, error)
                    helping = []
                if done is not None:
                    yield done
                if helping:
                    continue
            for unread, _ in [*waiting, (batch, None)]:
                if unread:
                    yield unread, local(raws(unread))
            waiting.clear()
        while waiting and helping:
            oldest, helper = waiting[0]
            try:
                readings = helper.receive()
            except Exception as error:  # noqa: BLE001 - any failure of a helper: read here
                _give_up(helping, error)
                helping = []
                break
            waiting.popleft()
            yield oldest, readings
        for unread, _ in waiting:
            yield unread, local(raws(unread))
    finally:
        stop(helping)


def _give_up(helpers: Sequence[Helper], error: Exception) -> None:
    logger.warning("the triage helper failed (%s); reading in this process", error)
    stop(helpers)


def _main(argv: list[str]) -> int:
    from nextround.classifier.persist import ModelFileError, load_model

    try:
        model = load_model(Path(argv[0]), argv[1])  # the daemon's model, or none at all
    except ModelFileError as error:
        print(f"nextround triage helper: {error}", file=sys.stderr)
        return 2
    model.threshold = float(argv[2])
    user = argv[3]
    fds = [int(fd) for fd in argv[4].split(",") if fd] if len(argv) > 4 else []
    readers, parent = [], os.getpid()
    still_open = set(fds)  # the pipes of the readers not forked yet
    for source, sink in zip(fds[::2], fds[1::2], strict=True):
        still_open -= {source, sink}
        pid = os.fork()
        if pid == 0:  # a reader of its own, sharing the model loaded above
            _die_with_parent(parent)
            for fd in (0, 1, *still_open):
                os.close(fd)
            with os.fdopen(source, "rb") as into, os.fdopen(sink, "wb") as out:
                os._exit(_serve(into, out, model, user))
        os.close(source)
        os.close(sink)
        readers.append(pid)
    status = _serve(sys.stdin.buffer, sys.stdout.buffer, model, user)
    for pid in readers:  # each ends with its input, which the daemon closes with ours
        os.waitpid(pid, 0)
    return status


def _serve(source: IO[bytes], sink: IO[bytes], model: RejectionModel, user: str) -> int:
    try:
        pickle.dump(READY, sink)
        sink.flush()
    except BrokenPipeError:
        return 0  # the cycle ended before this reader started
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
            # Python's advice: point the sink at devnull, or its flush at exit fails again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sink.fileno())
            return 0


def _die_with_parent(parent: int) -> None:
    """A forked reader goes when the helper process goes (Linux): a stop that ends the helper
    ends them all, even one stuck in a message."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it went before the line above took effect
        os._exit(0)


_PR_SET_PDEATHSIG = 1


if __name__ == "__main__":
    # Run as the module it is, not as __main__: the readings it pickles must name their class
    # where the daemon finds it (nextround.daemon.triage.Reading).
    from nextround.daemon import triage

    status = triage._main(sys.argv[1:])
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    # Without the interpreter's teardown (numpy, the model): the cycle waits for this exit,
    # and the teardown took 60 ms a reader.
    os._exit(status)
