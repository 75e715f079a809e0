"""Training the rejection classifier with scikit-learn; what it gives is an
`inference.RejectionModel`, which predicts in numpy alone (see classifier/inference.py).

The label model is a pipeline: TF-IDF over subject, body and sender features (the TF-IDF
steps below are fitted TfidfVectorizers that transform through the numpy indexes, so the
model is trained on exactly the vectors it will see), then a linear SVM with sigmoid
calibration. The stage and no-feedback models are logistic regressions on the same vectors.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from nextround.classifier.corpus import Example
from nextround.classifier.inference import (
    SCREEN_COLUMNS,
    Calibrated,
    Index,
    Linear,
    RejectionModel,
    features,
    text_start,
)
from nextround.classifier.message import Message
from nextround.classifier.vectors import GramIndex, TokenIndex, WordIndex, fold, text_grams

logger = logging.getLogger(__name__)

SEED = 20261122


class _Fitted(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):  # type: ignore[misc,call-arg]
    """A TfidfVectorizer (`tfidf_`) fitted with these settings (min_df, max_features and the
    subclass's `_SETTINGS`), transforming through the numpy index (`_INDEX`) built from it.
    Output is a sparse matrix, always: no set_output wrapper."""

    _SETTINGS: ClassVar[dict[str, Any]]
    _INDEX: ClassVar[type[WordIndex] | type[GramIndex]]
    tfidf_: TfidfVectorizer
    index_: WordIndex | GramIndex

    def __init__(self, min_df: int = 1, max_features: int | None = None) -> None:
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, documents: Iterable[str], y: Any = None) -> _Fitted:
        self.tfidf_ = TfidfVectorizer(
            min_df=self.min_df, max_features=self.max_features, sublinear_tf=True, **self._SETTINGS
        ).fit(documents)
        self.index_ = self._INDEX(self.tfidf_.vocabulary_, self.tfidf_.idf_)
        return self

    def transform(self, documents: Iterable[str]) -> sp.csr_matrix:
        return self.index_.transform(documents)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, Any]:
        return np.asarray(self.tfidf_.get_feature_names_out(), dtype=object)


class WordGrams(_Fitted):
    """TfidfVectorizer(ngram_range=(1, 2), preprocessor=fold, sublinear_tf=True)."""

    _SETTINGS: ClassVar[dict[str, Any]] = {"ngram_range": (1, 2), "preprocessor": fold}
    _INDEX = WordIndex


class CharGrams(_Fitted):
    """TfidfVectorizer(analyzer=text_grams, sublinear_tf=True)."""

    _SETTINGS: ClassVar[dict[str, Any]] = {"analyzer": text_grams}
    _INDEX = GramIndex


def _vectorizers() -> ColumnTransformer:
    sender = TfidfVectorizer(token_pattern=r"\S+", lowercase=False, use_idf=False)  # noqa: S106
    return ColumnTransformer(
        [
            ("subject", WordGrams(), 0),
            ("body", WordGrams(min_df=2, max_features=60_000), 1),
            ("chars", CharGrams(min_df=2, max_features=60_000), 2),
            ("sender", sender, 3),
        ]
    )


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


def _body_only(example: Example) -> Example:
    message = Message(message_id=example.message.message_id, text=example.message.text)
    return replace(example, id=example.id + "#body", message=message)


@dataclass(frozen=True)
class Fitted:
    """The scikit-learn models as trained (tests compare the numpy model with them)."""

    label: Pipeline
    stage: LogisticRegression
    no_feedback: LogisticRegression
    screen: LogisticRegression  # on screen_vectors' output


def train(examples: Sequence[Example], threshold: float = 0.5) -> RejectionModel:
    """Fit all four models; deterministic for the same examples (fixed seeds, sorted input)."""
    return compile_model(fit(examples), threshold)


def fit(examples: Sequence[Example]) -> Fitted:
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
    rejections = [index for index, example in enumerate(ordered) if example.label == "rejection"]
    stage_model = _binary_model().fit(
        vectors[rejections],
        [ordered[index].stage or "application" for index in rejections],
    )
    job = [index for index, example in enumerate(ordered) if example.label != "other"]
    feedback_model = _binary_model().fit(
        vectors[job], ["yes" if ordered[index].no_feedback_policy else "no" for index in job]
    )
    # The screen learns from whole mails and from their starts, which is what it is asked about.
    starts = [text_start(example.message) for example in ordered]
    transformer = label_model.named_steps["features"]
    screen_model = _binary_model().fit(
        sp.vstack(
            [
                screen_vectors(transformer, vectors),
                screen_vectors(transformer, transformer.transform(features(starts))),
            ],
            format="csr",
        ),
        ["other" if example.label == "other" else "job" for example in ordered] * 2,
    )
    return Fitted(label_model, stage_model, feedback_model, screen_model)


def screen_vectors(transformer: ColumnTransformer, vectors: sp.spmatrix) -> sp.csr_matrix:
    """The SCREEN_COLUMNS of the vectors the label pipeline's features step gives."""
    vectors = sp.csr_matrix(vectors)
    return sp.hstack(
        [vectors[:, transformer.output_indices_[name]] for name in SCREEN_COLUMNS], format="csr"
    )


def compile_model(fitted: Fitted, threshold: float = 0.5) -> RejectionModel:
    """The numpy model: the indexes the vectorisers transform through, and the linear
    models' coefficients (dense: 140,000 features by three classes is 3 MB)."""
    transformer: ColumnTransformer = fitted.label.named_steps["features"]
    columns: list[tuple[str, int, Index]] = []
    for name, part, column in transformer.transformers_:
        if isinstance(part, _Fitted):
            columns.append((name, column, part.index_))
        elif isinstance(part, TfidfVectorizer):
            columns.append((name, column, TokenIndex(part.vocabulary_)))
        else:
            raise TypeError(f"cannot compile feature column {name!r}: {type(part).__name__}")
    calibrated: CalibratedClassifierCV = fitted.label.named_steps["model"]
    if len(calibrated.classes_) < 3:
        raise ValueError("training needs rejections, closed positions and other mail")
    models = tuple(
        (
            _linear(item.estimator),
            np.array([calibrator.a_ for calibrator in item.calibrators]),
            np.array([calibrator.b_ for calibrator in item.calibrators]),
        )
        for item in calibrated.calibrated_classifiers_
    )
    return RejectionModel(
        columns=tuple(columns),
        label=Calibrated(tuple(str(name) for name in calibrated.classes_), models),
        stage=_linear(fitted.stage),
        no_feedback=_linear(fitted.no_feedback),
        screen=_linear(fitted.screen),
        threshold=threshold,
    )


def _linear(model: Any) -> Linear:
    return Linear(
        coef=np.asarray(model.coef_, dtype=np.float64),
        intercept=np.asarray(model.intercept_, dtype=np.float64),
        classes=tuple(str(name) for name in model.classes_),
    )
