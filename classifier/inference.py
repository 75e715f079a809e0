"""The classifier at run time: what a trained model decides about messages, in numpy alone.

Three linear models over the same vectors (classifier/model.py trains them):
- `label`: rejection | closed | other, a linear SVM with sigmoid calibration, over word and
  character n-grams of the body, word n-grams of the subject, and tokens describing the
  sender;
- `stage`: interview | application;
- `no_feedback`: whether the mail says no individual feedback is given;
- `screen`: job mail (rejection or closed) or not, from the start of the text (START_CHARS)
  and the word features alone: a logistic regression that skips the character n-grams,
  the label model's costliest column. Triage (daemon/triage.py) asks it first.
Rules appear only as features (the sender tokens) and as one narrow guard: mail the user
sent is never a rejection. Nothing here imports scikit-learn: the daemon that loads a model
stays 60 MB smaller.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from nextround.classifier.extract import is_ats_domain, is_automated_address, is_human_address
from nextround.classifier.message import Address, Message
from nextround.classifier.vectors import GramIndex, TokenIndex, WordIndex

# Bump when features or model settings change: stored models are then retrained.
MODEL_VERSION = "5"  # 5: a person with a title in the display name is a person

BODY_CHARS = 3000
BODY_CHARS_SHORT = 500
COLUMNS = ("subject", "body", "body_short", "sender")
# What triage reads of a message's text first: a rejection says what it is early. On the
# held-out split, the classifier on the first 400 characters ruled out no job mail that the
# full classification finds, on 300 it ruled out two (measured once, in session 5);
# bench/classify_eval.py prints the margin at this length.
START_CHARS = 600
# The columns the screen reads: all but the character n-grams.
SCREEN_COLUMNS = ("subject", "body", "sender")

# A reply's quoted history starts on a line of its own, after blank space, with one of these.
# clean_body walks the lines rather than search "^\s*marker": that pattern scans a run of
# blank lines again from every line start in it, seconds of CPU for a mail of newlines.
_QUOTE_MARKER = re.compile(
    r"On .{4,200} wrote:|Am .{4,200} schrieb .{1,200}:|Le .{4,200} a écrit\s*:|"
    r"El .{4,200} escribió:|Op .{4,200} schreef .{1,200}:|-{2,}\s*(?:Original Message|"
    r"Ursprüngliche Nachricht|Message d'origine|Mensaje original|Oorspronkelijk bericht)"
    r"\s*-{2,}|_{10,}",
    re.IGNORECASE,
)
_NON_SPACE = re.compile(r"\S")
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
# The lookbehind starts a match only where a word starts: without it the engine retries from
# every character of every word (most of the time spent on a long mail).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_DIGITS = re.compile(r"\d+")
_NAME_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


# Every marker _QUOTE_MARKER finds in ASCII text has one of these in it (the others need
# letters ASCII text lacks): ASCII text without any is not searched (most mail).
_QUOTE_WORDS = ("wrote:", "schrieb", "schreef", "--", "__")
# In ASCII text, a run of digits made a run of zeros, then one zero: what _DIGITS does, but
# a pattern that starts with a literal is searched for quickly, not tried at every character.
_ZERO_DIGITS = str.maketrans("123456789", "000000000")
_ZEROS = re.compile("00+")


def clean_body(text: str) -> str:
    """The mail's own words: quoted history cut, URLs, addresses and numbers normalised."""
    head = text[: BODY_CHARS * 4]
    lowered = head.lower()
    quoted = not head.isascii() or any(word in lowered for word in _QUOTE_WORDS)
    start = _quote_start(text, BODY_CHARS * 4) if quoted else None
    if start is not None and start > 40:
        text = text[:start]
    lines = [line for line in text[: BODY_CHARS * 4].splitlines() if not line.startswith(">")]
    # Twice what is kept is all the regular expressions below work on (they were most of the
    # time on long mail); link-heavy mail may keep less than BODY_CHARS of words for it.
    text = "\n".join(lines)[: BODY_CHARS * 2]
    if "://" in text or "www." in text.lower():
        text = _URL.sub(" urltoken ", text)
    if "@" in text:
        text = _EMAIL.sub(" emailtoken ", text)
    text = (
        _ZEROS.sub("0", text.translate(_ZERO_DIGITS)) if text.isascii() else _DIGITS.sub("0", text)
    )
    return text[:BODY_CHARS]


def own_text(text: str) -> str:
    """What the writer wrote: the text before quoted history, without quoted lines."""
    start = _quote_start(text, len(text))
    if start is not None:
        text = text[:start]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))


def _quote_start(text: str, end: int) -> int | None:
    """Where quoted history starts in text[:end]: the first line start followed by blank space
    and a marker, as "^\\s*marker" (MULTILINE) finds it, but in linear time."""
    line = 0
    while first := _NON_SPACE.search(text, line, end):
        # Every line start in the blank run before `first` leads to it: `line` is the first.
        if _QUOTE_MARKER.match(text, first.start(), end):
            return line
        line = text.find("\n", first.start(), end) + 1
        if not line:
            return None
    return None


def sender_tokens(message: Message) -> str:
    """Words describing who sent the mail and how: ATS, no-reply, a person, a list."""
    tokens = list(_address_tokens(message.from_))
    if message.reply_to:
        tokens.append("has_reply_to")
        if any(is_human_address(address) for address in message.reply_to):
            tokens.append("reply_to_human")
    if any(name.startswith("list-") for name in message.headers):  # message.list_headers
        tokens.append("list_mail")
    if message.auto_submitted and message.auto_submitted.lower() != "no":
        tokens.append("auto_submitted")
    if message.headers.get("precedence", "").lower() in ("bulk", "list", "junk"):
        tokens.append("precedence_bulk")
    if not message.text or message.text.isspace():
        tokens.append("empty_body")
    return " ".join(tokens)


@functools.lru_cache(maxsize=4096)
def _address_tokens(sender: Address | None) -> tuple[str, ...]:
    """The sender's part of `sender_tokens`; kept for the senders seen last, for most mail
    comes from people and services that wrote before."""
    if sender is None:
        return ("sender_missing",)
    tokens = []
    if is_ats_domain(sender.domain):
        tokens.append("sender_ats")
    if is_automated_address(sender):
        tokens.append("sender_automated")
    if is_human_address(sender):
        tokens.append("sender_human")
    tokens.append("tld_" + sender.domain.rpartition(".")[2])
    tokens += ["local_" + word for word in _NAME_WORD.findall(sender.local_part)[:4]]
    tokens += ["name_" + word.lower() for word in _NAME_WORD.findall(sender.name)[:6]]
    return tuple(tokens)


def text_start(message: Message) -> Message:
    """The message with the first START_CHARS characters of its text: what triage reads."""
    return (
        message
        if len(message.text) <= START_CHARS
        else replace(message, text=message.text[:START_CHARS])
    )


def features(messages: Sequence[Message]) -> np.ndarray[Any, Any]:
    rows = []
    for message in messages:
        body = clean_body(message.text)
        rows.append((message.subject, body, body[:BODY_CHARS_SHORT], sender_tokens(message)))
    return np.array(rows, dtype=object).reshape(len(rows), len(COLUMNS))


@dataclass(frozen=True)
class Prediction:
    label: str
    is_rejection: bool
    score: float  # calibrated probability that the mail is a rejection
    stage: str | None
    no_feedback_policy: bool
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Linear:
    """A fitted linear model: decision = vectors @ coef.T + intercept, one column per class
    (one column in all for two classes, for the second of them)."""

    coef: np.ndarray[Any, Any]  # (classes or 1, features)
    intercept: np.ndarray[Any, Any]
    classes: tuple[str, ...]

    def decision(self, vectors: sp.csr_matrix) -> np.ndarray[Any, Any]:
        return np.asarray(vectors @ self.coef.T) + self.intercept  # type: ignore[no-any-return]

    def positive(self, vectors: sp.csr_matrix, name: str) -> np.ndarray[Any, Any]:
        """LogisticRegression's predict_proba for a class, with two classes."""
        probability: np.ndarray[Any, Any] = expit(self.decision(vectors)[:, 0])
        return probability if self.classes.index(name) == 1 else 1.0 - probability


@dataclass(frozen=True)
class Calibrated:
    """CalibratedClassifierCV(method="sigmoid") over linear models, with three or more
    classes: each model's per-class decisions through a sigmoid (a, b), normalised to sum to
    one, averaged over the models."""

    classes: tuple[str, ...]
    models: tuple[tuple[Linear, np.ndarray[Any, Any], np.ndarray[Any, Any]], ...]  # (model, a, b)

    def probabilities(self, vectors: sp.csr_matrix) -> np.ndarray[Any, Any]:
        total = np.zeros((vectors.shape[0], len(self.classes)))
        for model, a, b in self.models:
            columns = [self.classes.index(name) for name in model.classes]
            proba = np.zeros_like(total)
            proba[:, columns] = expit(-(a * model.decision(vectors) + b))
            denominator = proba.sum(axis=1)[:, np.newaxis]
            uniform = np.full_like(proba, 1 / len(self.classes))
            proba = np.divide(proba, denominator, out=uniform, where=denominator != 0)
            proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
            total += proba
        return total / len(self.models)

    def weights(self, name: str) -> np.ndarray[Any, Any]:
        """Each feature's weight toward class `name`, averaged over the models."""
        rows = [model.coef[model.classes.index(name)] for model, _, _ in self.models]
        mean: np.ndarray[Any, Any] = np.mean(rows, axis=0)
        return mean


Index = WordIndex | GramIndex | TokenIndex


@dataclass
class RejectionModel:
    """A trained model: one index per feature column (in COLUMNS order of `features`, named
    for `explain`), the three linear models over their joined vectors, and the screen over
    the word columns' vectors."""

    columns: tuple[tuple[str, int, Index], ...]  # (name, column of `features`, index)
    label: Calibrated
    stage: Linear
    no_feedback: Linear
    screen: Linear  # classes ("job", "other"), over the SCREEN_COLUMNS' vectors
    threshold: float = 0.5
    # The signed file it was loaded from, and the fingerprint of what it was trained on, if
    # any: a helper process can load the very same model.
    source: Path | None = field(default=None, compare=False)
    fingerprint: str | None = field(default=None, compare=False)

    def predict(
        self, messages: Sequence[Message], user_addresses: Sequence[str] = ()
    ) -> list[Prediction]:
        if not messages:
            return []
        return self._predictions(messages, self.vectorise(messages), user_addresses)

    def _predictions(
        self,
        messages: Sequence[Message],
        vectors: sp.csr_matrix,
        user_addresses: Sequence[str] = (),
    ) -> list[Prediction]:
        classes = self.label.classes
        probabilities = self.label.probabilities(vectors)
        interview = self.stage.positive(vectors, "interview")
        no_feedback = self.no_feedback.positive(vectors, "yes")
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

    def vectorise(
        self, messages: Sequence[Message], names: Sequence[str] | None = None
    ) -> sp.csr_matrix:
        """The messages' vectors: every column's, or the named columns' (in model order)."""
        return sp.hstack(list(self._blocks(features(messages), names).values()), format="csr")

    def _blocks(
        self, rows: np.ndarray[Any, Any], names: Sequence[str] | None = None
    ) -> dict[str, sp.csr_matrix]:
        """Each column's vectors from `features` rows, or the named columns' (in model order)."""
        return {
            name: index.transform(rows[:, column])
            for name, column, index in self.columns
            if names is None or name in names
        }

    def job_chances(self, messages: Sequence[Message]) -> np.ndarray[Any, Any]:
        """The screen's chance that each message is job mail, from the start of its text."""
        return self.screened(messages, lowest=np.inf)[0]

    def screened(
        self, messages: Sequence[Message], lowest: float, user_addresses: Sequence[str] = ()
    ) -> tuple[np.ndarray[Any, Any], dict[int, Prediction]]:
        """The screen's chance that each message is job mail, from the start of its text, and
        `predict` on that start for each message it gives at least `lowest`, by index. The
        classifier reads the screen's columns too: their vectors are reused, not counted
        again (a row of a batch's vectors depends on that message alone)."""
        if not messages:
            return np.zeros(0), {}
        starts = [text_start(message) for message in messages]
        rows = features(starts)
        blocks = self._blocks(rows, SCREEN_COLUMNS)
        chances = self.screen.positive(sp.hstack(list(blocks.values()), format="csr"), "job")
        kept = np.flatnonzero(chances >= lowest)
        if not len(kept):
            return chances, {}
        rest = self._blocks(rows[kept], [name for name, _, _ in self.columns if name not in blocks])
        parts = [
            blocks[name][kept] if name in blocks else rest[name] for name, _, _ in self.columns
        ]
        vectors = sp.hstack(parts, format="csr")
        predictions = self._predictions([starts[i] for i in kept], vectors, user_addresses)
        return chances, dict(zip(kept.tolist(), predictions, strict=True))

    def explain(self, message: Message, top: int = 8) -> list[tuple[str, float]]:
        """The features that pushed hardest toward (positive) or away from a rejection."""
        weights = self.label.weights("rejection")
        vector = self.vectorise([message])
        names = [
            f"{name}__{feature}" for name, _, index in self.columns for feature in index.names()
        ]
        contributions = [
            (names[column], float(value * weights[column]))
            for column, value in zip(vector.indices, vector.data, strict=True)
        ]
        contributions.sort(key=lambda item: abs(item[1]), reverse=True)
        return contributions[:top]
