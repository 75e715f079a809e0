"""The numpy model computes exactly what the scikit-learn one it was compiled from does: the
indexes give the matrices of the TfidfVectorizers they were built from (on the shipped corpus
and on odd text), the model's vectors equal the trained ColumnTransformer's, and its
probabilities the fitted estimators' predict_proba. A stored model holds no scikit-learn
object, so the daemon that loads it never imports scikit-learn."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from nextround.classifier import inference
from nextround.classifier.corpus import load_corpus
from nextround.classifier.inference import SCREEN_COLUMNS, RejectionModel, features
from nextround.classifier.message import Message
from nextround.classifier.model import CharGrams, WordGrams, compile_model, fit, screen_vectors
from nextround.classifier.persist import save_model
from nextround.classifier.vectors import TokenIndex, fold, tokens, words


def odd_texts(count: int) -> list[str]:
    rng = random.Random(7)
    alphabet = (
        "ab cd\u00e9\u0308\u00df\u03a3\u03c3\u03c2 \u0142\u00f8 0123 _-.,\n\t\u00a0\u65e5\u672c"
    )
    # ASCII text is split into words its own way (vectors.words): every punctuation mark,
    # digits and underscores, runs of one character.
    ascii_alphabet = "aB z_9 0-.,;:!?'\"()[]{}<>@#$%^&*+=/\\|`~\n\t\r\x0b\x0c\x1f\x7f"
    return [
        "".join(rng.choice(chars) for _ in range(rng.randint(0, 80)))
        for chars in (alphabet, ascii_alphabet)
        for _ in range(count)
    ]


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


def test_token_index_equals_tfidf(texts: list[str]) -> None:
    tokens = [" ".join(text.split()[:12]) for text in texts]
    vectorizer = TfidfVectorizer(token_pattern=r"\S+", lowercase=False, use_idf=False)
    expected = vectorizer.fit_transform(tokens)
    assert abs(TokenIndex(vectorizer.vocabulary_).transform(tokens) - expected).max() == 0


def test_compiled_model_equals_scikit_learn(tmp_path: Path) -> None:
    examples = load_corpus()[::6]
    fitted = fit(examples)
    model = compile_model(fitted)
    messages = [example.message for example in examples[:200]]
    expected = fitted.label.named_steps["features"].transform(features(messages))
    vectors = model.vectorise(messages)
    assert np.abs((vectors - expected).toarray()).max() == 0
    probabilities = fitted.label.named_steps["model"].predict_proba(expected)
    assert np.array_equal(model.label.probabilities(vectors), probabilities)
    for linear, sklearn_model, name in (
        (model.stage, fitted.stage, "interview"),
        (model.no_feedback, fitted.no_feedback, "yes"),
    ):
        column = list(sklearn_model.classes_).index(name)
        assert np.array_equal(
            linear.positive(vectors, name), sklearn_model.predict_proba(expected)[:, column]
        )
    # The screen: the same word columns, the same logistic regression.
    transformer = fitted.label.named_steps["features"]
    words = model.vectorise(messages, SCREEN_COLUMNS)
    assert np.abs((words - screen_vectors(transformer, expected)).toarray()).max() == 0
    column = list(fitted.screen.classes_).index("job")
    assert np.array_equal(
        model.screen.positive(words, "job"),
        fitted.screen.predict_proba(screen_vectors(transformer, expected))[:, column],
    )
    # Names for --explain, as the ColumnTransformer gives them.
    names = fitted.label.named_steps["features"].get_feature_names_out()
    assert [name for name, _ in model.explain(messages[0], top=10_000)] == [
        names[column] for column in _by_weight(model, messages[0])
    ]
    path = tmp_path / "model.bin"
    save_model(model, path, "test")
    assert b"sklearn" not in path.read_bytes()
    # What the daemon imports, and a stored model loaded and used: no scikit-learn.
    script = (
        "import sys; from pathlib import Path\n"
        "import nextround.daemon.cli, nextround.daemon.service, nextround.daemon.engine\n"
        "from nextround.classifier.persist import load_model\n"
        "from nextround.classifier.message import Message\n"
        f"model = load_model(Path({str(path)!r}))\n"
        "model.predict([Message(message_id='<m@x>', text='We regret to inform you')])\n"
        "print(sorted(name for name in sys.modules if name.startswith('sklearn')))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def _by_weight(model: RejectionModel, message: Message) -> list[int]:
    vector = model.vectorise([message])
    weights = model.label.weights("rejection")
    pairs = sorted(
        zip(vector.indices, vector.data * weights[vector.indices], strict=True),
        key=lambda pair: abs(pair[1]),
        reverse=True,
    )
    return [int(column) for column, _ in pairs]


def test_words_and_tokens_of_ascii_text_are_the_regular_expressions() -> None:
    rng = random.Random(11)
    ascii_texts = [
        "".join(map(chr, rng.choices(range(128), k=rng.randint(0, 40)))) for _ in range(3000)
    ]
    for text in [*ascii_texts, *odd_texts(100), "a", "_", "a_b 9", "\u00e9t\u00e9 x"]:
        assert words(text) == re.findall(r"\w+", text)
        assert tokens(text) == re.findall(r"\w\w+", text)


# How clean_body first found quoted history; quadratic in a run of blank lines.
_QUOTE_START = re.compile(r"^\s*(?:" + inference._QUOTE_MARKER.pattern + ")", re.M | re.I)


def _clean_body_by_regular_expressions(text: str) -> str:
    """clean_body as first written, all regular expressions: what the faster one must equal."""
    match = _QUOTE_START.search(text, 0, inference.BODY_CHARS * 4)
    if match and match.start() > 40:
        text = text[: match.start()]
    lines = [line for line in text[: inference.BODY_CHARS * 4].splitlines() if line[:1] != ">"]
    text = "\n".join(lines)[: inference.BODY_CHARS * 2]
    if "://" in text or "www." in text.lower():
        text = inference._URL.sub(" urltoken ", text)
    if "@" in text:
        text = inference._EMAIL.sub(" emailtoken ", text)
    return re.sub(r"\d+", "0", text)[: inference.BODY_CHARS]


_BODY_PIECES = st.sampled_from(
    [
        " ",
        "\n",
        "\n\n",
        "\t",
        "\r",
        "\u2003",
        "a",
        "Z",
        "0",
        "7",
        "12",
        "\u0663",
        "\u00e9",
        "\u2014",
        "-",
        "--",
        "_" * 10,
        ">",
        "On Mon, 1 Jan 2024 Ann wrote:",
        "Am 1. Jan schrieb Ann:",
        "Op 1 jan schreef Ann:",
        "Le 1 janv. a \u00e9crit :",
        "El 1 ene escribi\u00f3:",
        "-- Original Message --",
        "ON X WROTE:",
        "www.example.org",
        "https://x.example/a1",
        "ann@example.org",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_BODY_PIECES, max_size=60).map("".join), st.integers(0, 2))
def test_clean_body_equals_its_regular_expressions(text: str, padding: int) -> None:
    text = "x" * 41 * padding + text  # a quote marker after the first 40 characters is cut
    assert inference.clean_body(text) == _clean_body_by_regular_expressions(text)


def test_fold_strips_the_accents_of_precomposed_latin_letters_alone() -> None:
    table = {
        code: "".join(
            c for c in unicodedata.normalize("NFKD", chr(code)) if not unicodedata.combining(c)
        )
        for code in range(0xC0, 0x250)
    }
    rng = random.Random(5)
    alphabet = [
        chr(code) for code in (*range(0x20, 0x7F), *range(0xA0, 0x300), 0x2014, 0x3A3, 0x65E5)
    ]
    for _ in range(3000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 30)))
        assert fold(text) == text.lower().translate(table)


@settings(max_examples=500, deadline=None)
@given(st.lists(_BODY_PIECES, max_size=60).map("".join), st.integers(0, 3000))
def test_quoted_history_is_found_where_the_line_pattern_finds_it(text: str, end: int) -> None:
    found = _QUOTE_START.search(text, 0, end)
    assert inference._quote_start(text, end) == (found.start() if found else None)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("Thanks.\n" + "\n \t" * 3000 + "-- Original Message --\nold", 8),
        ("Thanks.\n" + "\n" * 12_000 + "On Mon, Ann wrote:", None),  # past what is searched
        ("Thanks.\n--" + "\n" * 12_000, None),
        ("Thanks.\n" + "x\n" * 5000 + "  On Mon, 1 Jan Ann wrote:\n> hi", 10_008),
    ],
)
def test_quoted_history_after_long_runs_of_lines(text: str, start: int | None) -> None:
    assert inference._quote_start(text, inference.BODY_CHARS * 4) == start
