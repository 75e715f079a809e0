"""The rejection classifier: scikit-learn pipelines over subject, body and sender features.

Three models, trained together from the same examples:
- `label`: rejection | closed | other, a calibrated linear SVM over word and character n-grams
  of the body, word n-grams of the subject, and tokens describing the sender;
- `stage`: interview | application, trained on rejections only;
- `no_feedback`: whether the mail says no individual feedback is given.
Rules appear only as features (the sender tokens) and as one narrow guard: mail the user
sent is never a rejection.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from nextround.classifier.corpus import Example
from nextround.classifier.extract import is_ats_domain, is_automated_address, is_human_address
from nextround.classifier.message import Message
from nextround.classifier.vectors import CharGrams, WordGrams

logger = logging.getLogger(__name__)

# Bump when features or model settings change: stored models are then retrained.
MODEL_VERSION = "2"
SEED = 20261122
BODY_CHARS = 3000
BODY_CHARS_SHORT = 500
COLUMNS = ("subject", "body", "body_short", "sender")

_QUOTE_START = re.compile(
    r"^\s*(?:On .{4,200} wrote:|Am .{4,200} schrieb .{1,200}:|Le .{4,200} a écrit\s*:|"
    r"El .{4,200} escribió:|Op .{4,200} schreef .{1,200}:|-{2,}\s*(?:Original Message|"
    r"Ursprüngliche Nachricht|Message d'origine|Mensaje original|Oorspronkelijk bericht)"
    r"\s*-{2,}|_{10,})",
    re.MULTILINE | re.IGNORECASE,
)
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
# The lookbehind starts a match only where a word starts: without it the engine retries from
# every character of every word (most of the time spent on a long mail).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_DIGITS = re.compile(r"\d+")
_NAME_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def clean_body(text: str) -> str:
    """The mail's own words: quoted history cut, URLs, addresses and numbers normalised."""
    match = _QUOTE_START.search(text, 0, BODY_CHARS * 4)
    if match and match.start() > 40:
        text = text[: match.start()]
    lines = [line for line in text[: BODY_CHARS * 4].splitlines() if not line.startswith(">")]
    # Twice what is kept is all the regular expressions below work on (they were most of the
    # time on long mail); link-heavy mail may keep less than BODY_CHARS of words for it.
    text = "\n".join(lines)[: BODY_CHARS * 2]
    if "://" in text or "www." in text.lower():
        text = _URL.sub(" urltoken ", text)
    if "@" in text:
        text = _EMAIL.sub(" emailtoken ", text)
    text = _DIGITS.sub("0", text)
    return text[:BODY_CHARS]


def sender_tokens(message: Message) -> str:
    """Words describing who sent the mail and how: ATS, no-reply, a person, a list."""
    tokens = []
    sender = message.from_
    if sender is None:
        tokens.append("sender_missing")
    else:
        if is_ats_domain(sender.domain):
            tokens.append("sender_ats")
        if is_automated_address(sender):
            tokens.append("sender_automated")
        if is_human_address(sender):
            tokens.append("sender_human")
        tokens.append("tld_" + sender.domain.rpartition(".")[2])
        tokens += ["local_" + word for word in _NAME_WORD.findall(sender.local_part)[:4]]
        tokens += ["name_" + word.lower() for word in _NAME_WORD.findall(sender.name)[:6]]
    if message.reply_to:
        tokens.append("has_reply_to")
        if any(is_human_address(address) for address in message.reply_to):
            tokens.append("reply_to_human")
    if message.list_headers:
        tokens.append("list_mail")
    if message.auto_submitted and message.auto_submitted.lower() != "no":
        tokens.append("auto_submitted")
    if message.headers.get("precedence", "").lower() in ("bulk", "list", "junk"):
        tokens.append("precedence_bulk")
    if not message.text.strip():
        tokens.append("empty_body")
    return " ".join(tokens)


def features(messages: Sequence[Message]) -> np.ndarray[Any, Any]:
    rows = []
    for message in messages:
        body = clean_body(message.text)
        rows.append((message.subject, body, body[:BODY_CHARS_SHORT], sender_tokens(message)))
    return np.array(rows, dtype=object).reshape(len(rows), len(COLUMNS))


def _vectorizers(with_sender: bool = True) -> ColumnTransformer:
    parts: list[tuple[str, Any, int]] = [
        ("subject", WordGrams(), 0),
        ("body", WordGrams(min_df=2, max_features=60_000), 1),
        ("chars", CharGrams(min_df=2, max_features=60_000), 2),
    ]
    if with_sender:
        parts.append(
            ("sender", TfidfVectorizer(token_pattern=r"\S+", lowercase=False, use_idf=False), 3)  # noqa: S106
        )
    return ColumnTransformer(parts)


def _label_pipeline() -> Pipeline:
    svm = LinearSVC(C=1.0, class_weight="balanced", random_state=SEED)
    return Pipeline(
        [
            ("features", _vectorizers()),
            ("model", CalibratedClassifierCV(svm, method="sigmoid", cv=5, ensemble=False)),
        ]
    )


def _binary_model() -> LogisticRegression:
    return LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, random_state=SEED)


def _slim(pipeline: Pipeline) -> None:
    """Drop what fitting keeps only for introspection: `stop_words_` holds every n-gram cut
    by min_df/max_features (millions of strings) and would make the stored model huge."""
    transformer: ColumnTransformer = pipeline.named_steps["features"]
    for _, part, _ in transformer.transformers_:
        vectorizer = getattr(part, "tfidf_", part)
        if hasattr(vectorizer, "stop_words_"):
            del vectorizer.stop_words_
        # numpy.int64 values cost 32 bytes each against 28 for small ints shared by the
        # interpreter: a few MB of the daemon's resident memory.
        if hasattr(vectorizer, "vocabulary_"):
            vectorizer.vocabulary_ = {term: int(i) for term, i in vectorizer.vocabulary_.items()}


@dataclass(frozen=True)
class Prediction:
    label: str
    is_rejection: bool
    score: float  # calibrated probability that the mail is a rejection
    stage: str | None
    no_feedback_policy: bool
    probabilities: dict[str, float]


@dataclass
class RejectionModel:
    """`label` is the whole pipeline (features + calibrated SVM); `stage` and `no_feedback`
    are linear models over the same features, so a message is vectorised once."""

    label: Pipeline
    stage: LogisticRegression
    no_feedback: LogisticRegression
    threshold: float = 0.5

    def predict(
        self, messages: Sequence[Message], user_addresses: Sequence[str] = ()
    ) -> list[Prediction]:
        if not messages:
            return []
        vectors = self.vectorise(messages)
        calibrated: CalibratedClassifierCV = self.label.named_steps["model"]
        classes = [str(name) for name in calibrated.classes_]
        probabilities = calibrated.predict_proba(vectors)
        interview = self._positive(self.stage, vectors, "interview")
        no_feedback = self._positive(self.no_feedback, vectors, "yes")
        own = {address.lower() for address in user_addresses}
        results = []
        for index, message in enumerate(messages):
            scores = {name: float(probabilities[index][i]) for i, name in enumerate(classes)}
            if message.from_ is not None and message.from_.email in own:
                # Narrow guard: the user's own mail (a sent request) is never a rejection.
                scores = {name: (1.0 if name == "other" else 0.0) for name in classes}
            score = scores.get("rejection", 0.0)
            is_rejection = score >= self.threshold
            if is_rejection:
                label = "rejection"
            else:
                label = max(
                    (name for name in classes if name != "rejection"), key=scores.__getitem__
                )
            results.append(
                Prediction(
                    label=label,
                    is_rejection=is_rejection,
                    score=round(score, 4),
                    stage=("interview" if interview[index] >= 0.5 else "application")
                    if is_rejection
                    else None,
                    no_feedback_policy=bool(no_feedback[index] >= 0.5) and label != "other",
                    probabilities=scores,
                )
            )
        return results

    def vectorise(self, messages: Sequence[Message]) -> sp.csr_matrix:
        """What the fitted ColumnTransformer gives, without its per-call machinery (a third
        of the time when one message is classified)."""
        transformer: ColumnTransformer = self.label.named_steps["features"]
        columns = features(messages)
        parts = [
            vectorizer.transform(columns[:, column])
            for _, vectorizer, column in transformer.transformers_
            if vectorizer != "drop"
        ]
        return sp.hstack(parts, format="csr")

    @staticmethod
    def _positive(model: LogisticRegression, vectors: Any, positive: str) -> Any:
        classes = list(model.classes_)
        return model.predict_proba(vectors)[:, classes.index(positive)]

    def explain(self, message: Message, top: int = 8) -> list[tuple[str, float]]:
        """The features that pushed hardest toward (positive) or away from a rejection."""
        transformer: ColumnTransformer = self.label.named_steps["features"]
        calibrated: CalibratedClassifierCV = self.label.named_steps["model"]
        classes = list(calibrated.classes_)
        column = classes.index("rejection")
        weights = np.mean(
            [
                item.estimator.coef_[column]
                if item.estimator.coef_.shape[0] > 1
                else item.estimator.coef_[0]
                for item in calibrated.calibrated_classifiers_
            ],
            axis=0,
        )
        vector = transformer.transform(features([message])).tocsr()
        names = transformer.get_feature_names_out()
        contributions = [
            (str(names[index]), float(value * weights[index]))
            for index, value in zip(vector.indices, vector.data, strict=True)
        ]
        contributions.sort(key=lambda item: abs(item[1]), reverse=True)
        return contributions[:top]


def _body_only(example: Example) -> Example:
    message = Message(message_id=example.message.message_id, text=example.message.text)
    return replace(example, id=example.id + "#body", message=message)


def train(examples: Sequence[Example], threshold: float = 0.5) -> RejectionModel:
    """Fit all three models; deterministic for the same examples (fixed seeds, sorted input)."""
    ordered = sorted(examples, key=lambda example: example.id)
    # Mail is sometimes seen without its headers (a pasted body, a forwarded text): half of
    # the examples are also learnt from their body alone, so the body has to carry the verdict.
    ordered += [_body_only(example) for example in ordered if zlib.crc32(example.id.encode()) % 2]
    labels = [example.label for example in ordered]
    if len(set(labels)) < len(set(("rejection", "other"))):
        raise ValueError("training needs at least rejections and other mail")
    # Vectorise once and fit the pipeline's steps on the result: the character n-grams are
    # most of the training time, and the stage and feedback models reuse the same vectors.
    label_model = _label_pipeline()
    vectors = (
        label_model.named_steps["features"]
        .fit_transform(features([example.message for example in ordered]))
        .tocsr()
    )
    label_model.named_steps["model"].fit(vectors, labels)
    _slim(label_model)
    rejections = [index for index, example in enumerate(ordered) if example.label == "rejection"]
    stage_model = _binary_model().fit(
        vectors[rejections],
        [ordered[index].stage or "application" for index in rejections],
    )
    job = [index for index, example in enumerate(ordered) if example.label != "other"]
    feedback_model = _binary_model().fit(
        vectors[job], ["yes" if ordered[index].no_feedback_policy else "no" for index in job]
    )
    return RejectionModel(label_model, stage_model, feedback_model, threshold)
