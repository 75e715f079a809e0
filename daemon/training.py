"""Training and loading the classifier for this installation.

The model lives in the state directory. It is retrained when its inputs change: the shipped
corpus, the user's examples (corrections from `nextround label` in `<state>/examples/` and
`[classifier] extra_examples`), the model code's version, or scikit-learn's version.
Training needs scikit-learn; predicting does not. `get_model` trains in a child process, so a
long-running daemon never carries scikit-learn's 60 MB or what training leaves behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nextround.classifier.corpus import LABELS, Example, corpus_files, fingerprint, load_corpus
from nextround.classifier.inference import MODEL_VERSION, RejectionModel
from nextround.classifier.persist import ModelFileError, load_model, save_model
from nextround.daemon.errors import ClassifierError, MessageParseError
from nextround.daemon.parse import parse_message

logger = logging.getLogger(__name__)

MODEL_FILE = "model.bin"


@dataclass(frozen=True)
class ModelSettings:
    state_dir: Path
    threshold: float
    extra_examples: Path | None = None

    @property
    def model_path(self) -> Path:
        return self.state_dir / MODEL_FILE

    @property
    def corrections_dir(self) -> Path:
        return self.state_dir / "examples"

    def example_dirs(self) -> list[Path]:
        dirs = [self.corrections_dir]
        if self.extra_examples is not None:
            dirs.append(self.extra_examples)
        return dirs


@dataclass(frozen=True)
class TrainReport:
    path: Path
    examples: int
    by_label: dict[str, int]
    user_examples: int
    skipped: list[str]
    seconds: float
    fingerprint: str


def _eml_files(settings: ModelSettings) -> list[Path]:
    files: list[Path] = []
    for directory in settings.example_dirs():
        for label in LABELS:
            files.extend(sorted((directory / label).glob("*.eml")))
    return files


def current_fingerprint(settings: ModelSettings) -> str:
    return fingerprint(
        [*corpus_files(), *_eml_files(settings)],
        MODEL_VERSION,
        importlib.metadata.version("scikit-learn"),
        # Where an example sits decides its label.
        *(str(path.parent.name) for path in _eml_files(settings)),
    )


def user_examples(settings: ModelSettings) -> tuple[list[Example], list[str]]:
    examples, skipped = [], []
    for path in _eml_files(settings):
        try:
            message = parse_message(path.read_bytes())
        except (OSError, MessageParseError) as error:
            skipped.append(f"{path}: {error}")
            continue
        examples.append(Example(id=f"user:{path}", message=message, label=path.parent.name))
    return examples, skipped


def train_and_save(settings: ModelSettings) -> tuple[RejectionModel, TrainReport]:
    from nextround.classifier.model import train  # scikit-learn: only where it trains

    started = time.perf_counter()
    corpus = load_corpus()
    extra, skipped = user_examples(settings)  # the caller reports what was skipped
    examples = corpus + extra
    stamp = current_fingerprint(settings)
    try:
        model = train(examples, settings.threshold)
        save_model(model, settings.model_path, stamp)
    except (ValueError, OSError) as error:
        raise ClassifierError(f"training failed: {error}") from None
    by_label = {label: sum(example.label == label for example in examples) for label in LABELS}
    return model, TrainReport(
        path=settings.model_path,
        examples=len(examples),
        by_label=by_label,
        user_examples=len(extra),
        skipped=skipped,
        seconds=time.perf_counter() - started,
        fingerprint=stamp,
    )


def get_model(settings: ModelSettings) -> RejectionModel:
    """The stored model if it matches its inputs, else a freshly trained one."""
    stamp = current_fingerprint(settings)
    if settings.model_path.exists():
        try:
            model = load_model(settings.model_path, stamp)
            model.threshold = settings.threshold
            return model
        except ModelFileError as error:
            logger.info("retraining the classifier: %s", error)
    else:
        logger.info("training the classifier (first use)")
    report = _train_in_child(settings)
    for problem in report.skipped:
        logger.warning("skipped example %s", problem)
    logger.info(
        "trained on %d examples in %.1f s; saved to %s",
        report.examples,
        report.seconds,
        report.path,
    )
    try:
        model = load_model(settings.model_path, report.fingerprint)
    except ModelFileError as error:
        raise ClassifierError(f"the model just trained does not load: {error}") from None
    model.threshold = settings.threshold
    return model


def _train_in_child(settings: ModelSettings) -> TrainReport:
    """`train_and_save` in a fresh interpreter (this module run as a program), which exits
    when done: nothing of scikit-learn stays behind, not even a helper process."""
    request = {
        "state_dir": str(settings.state_dir),
        "threshold": settings.threshold,
        "extra_examples": None if settings.extra_examples is None else str(settings.extra_examples),
    }
    try:
        # Our own interpreter and module, no shell.
        done = subprocess.run(
            [sys.executable, "-P", "-m", __name__, json.dumps(request)],  # -P: not from cwd
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as error:
        raise ClassifierError(f"training failed: cannot start it: {error}") from None
    if done.returncode < 0:
        raise ClassifierError(f"training failed: killed by signal {-done.returncode}")
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        # The child's own error says "training failed" already.
        prefix = "" if reason.startswith("training failed") else "training failed: "
        raise ClassifierError(prefix + reason)
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
        return TrainReport(**{**report, "path": Path(report["path"])})
    except (IndexError, ValueError, TypeError, KeyError) as error:
        raise ClassifierError(f"training failed: unreadable report ({error})") from None


def _main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    settings = ModelSettings(
        state_dir=Path(request["state_dir"]),
        threshold=float(request["threshold"]),
        extra_examples=Path(request["extra_examples"]) if request["extra_examples"] else None,
    )
    try:
        _, report = train_and_save(settings)
    except ClassifierError as error:
        print(error, file=sys.stderr)
        return 1
    print(json.dumps({**asdict(report), "path": str(report.path)}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
