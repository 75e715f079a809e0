"""The numpy vectorisers give exactly the matrices of the TfidfVectorizer they are fitted
with, on the shipped corpus and on odd text; the model's vectorise equals its
ColumnTransformer."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from nextround.classifier.corpus import load_corpus
from nextround.classifier.model import features, train
from nextround.classifier.vectors import CharGrams, WordGrams


def odd_texts(count: int) -> list[str]:
    rng = random.Random(7)
    alphabet = (
        "ab cd\u00e9\u0308\u00df\u03a3\u03c3\u03c2 \u0142\u00f8 0123 _-.,\n\t\u00a0\u65e5\u672c"
    )
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(count)]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    columns = features([example.message for example in load_corpus()[:600]])
    return [*columns[:, 1], *columns[:, 0], *odd_texts(300)]


@pytest.mark.parametrize(
    "make", [lambda: WordGrams(), lambda: WordGrams(min_df=2, max_features=500)]
)
def test_word_grams_equal_tfidf(texts: list[str], make: object) -> None:
    vectorizer = make()  # type: ignore[operator]
    vectorizer.fit(texts)
    expected = vectorizer.tfidf_.transform(texts)
    got = vectorizer.transform(texts)
    assert got.shape == expected.shape and abs(got - expected).max() == 0


def test_char_grams_equal_tfidf_cold_and_warm(texts: list[str]) -> None:
    vectorizer = CharGrams(min_df=2, max_features=5_000).fit(texts)
    expected = vectorizer.tfidf_.transform(texts)
    for _ in ("cold", "warm"):
        got = vectorizer.transform(texts)
        assert abs(got - expected).max() == 0
    assert isinstance(vectorizer.tfidf_, TfidfVectorizer)


def test_model_vectorise_equals_its_column_transformer() -> None:
    examples = load_corpus()[::6]
    model = train(examples)
    messages = [example.message for example in examples[:200]]
    expected = model.label.named_steps["features"].transform(features(messages))
    assert np.abs((model.vectorise(messages) - expected).toarray()).max() == 0
