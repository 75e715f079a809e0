"""Training and loading the classifier for this installation.

The model lives in the state directory. It is retrained when its inputs change: the shipped
corpus, the user's examples (corrections from `nextround label` in `<state>/examples/` and
`[classifier] extra_examples`), the model code's version, or scikit-learn's version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import sklearn

from nextround.classifier.corpus import LABELS, Example, corpus_files, fingerprint, load_corpus
from nextround.classifier.model import MODEL_VERSION, RejectionModel, train
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
        sklearn.__version__,
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
    started = time.perf_counter()
    corpus = load_corpus()
    extra, skipped = user_examples(settings)
    for problem in skipped:
        logger.warning("skipping example %s", problem)
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
    model, report = train_and_save(settings)
    logger.info(
        "trained on %d examples in %.1f s; saved to %s",
        report.examples,
        report.seconds,
        report.path,
    )
    return model
