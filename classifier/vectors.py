"""TF-IDF vectorisers for the classifier that do their counting in numpy.

`TfidfVectorizer` cuts every document into n-grams and looks each one up in its vocabulary
in Python: most of the classifier's time. These two are fitted *with* a TfidfVectorizer (the
vocabulary and idf are its own) and give the same numbers, a unit test holds them to that,
but count differently:
- `WordGrams` (words and word pairs) maps each word to an integer once and finds the pairs
  as integer keys with one sorted search over the whole batch;
- `CharGrams` (character n-grams within words) keeps each word's n-gram ids, counts words per
  document, and lets one sparse product (documents x words) @ (words x n-grams) count them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

# Words whose n-gram ids `CharGrams` keeps between calls; cleared when full, so memory stays
# bounded (about 6 MB at the limit).
CACHE_WORDS = 20_000
_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # TfidfVectorizer's default token_pattern

# Precomposed accented Latin letters to their base letters (é -> e, Ł stays Ł): what
# TfidfVectorizer's strip_accents="unicode" does for them, as one table lookup per character;
# other scripts and decomposed accents are left as they are.
_FOLD = {
    code: "".join(
        part for part in unicodedata.normalize("NFKD", chr(code)) if not unicodedata.combining(part)
    )
    for code in range(0xC0, 0x250)
}


def fold(text: str) -> str:
    """Lower case without accents: how words are compared."""
    lowered = text.lower()
    return lowered if lowered.isascii() else lowered.translate(_FOLD)


def word_grams(word: str, low: int = 3, high: int = 5) -> list[str]:
    """The n-grams of one word padded with a space on each side: " wor", "ord ", ..."""
    padded = f" {word} "
    return [padded[i : i + n] for n in range(low, high + 1) for i in range(len(padded) - n + 1)]


def text_grams(text: str) -> list[str]:
    """All n-grams of a text's words: the analyzer `CharGrams` is fitted with."""
    return [gram for word in _WORD.findall(text.lower()) for gram in word_grams(word)]


def _weigh(counts: sp.csr_matrix, idf: np.ndarray[Any, Any]) -> sp.csr_matrix:
    """What TfidfVectorizer(sublinear_tf=True) does to counts: 1 + log(tf), times idf,
    l2-normalised rows."""
    counts.sum_duplicates()
    counts.sort_indices()
    np.log(counts.data, out=counts.data)
    counts.data += 1
    counts.data *= idf[counts.indices]
    return normalize(counts, copy=False)


class _Fitted(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """What both share: the settings passed to the TfidfVectorizer (`tfidf_`) they fit."""

    tfidf_: TfidfVectorizer

    def __init__(self, min_df: int = 1, max_features: int | None = None) -> None:
        self.min_df = min_df
        self.max_features = max_features

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, Any]:
        return np.asarray(self.tfidf_.get_feature_names_out(), dtype=object)


class WordGrams(_Fitted):
    """TfidfVectorizer(ngram_range=(1, 2), preprocessor=fold, sublinear_tf=True)."""

    def fit(self, documents: Iterable[str], y: Any = None) -> WordGrams:
        self.tfidf_ = TfidfVectorizer(
            ngram_range=(1, 2),
            preprocessor=fold,
            min_df=self.min_df,
            max_features=self.max_features,
            sublinear_tf=True,
        ).fit(documents)
        self._index()
        return self

    def _index(self) -> None:
        """Integer ids for every word the vocabulary mentions, the column of each single
        word, and the sorted integer keys (first * words + second) of the word pairs."""
        vocabulary: dict[str, int] = self.tfidf_.vocabulary_
        words: dict[str, int] = {}
        for term in vocabulary:
            for word in term.split(" "):
                words.setdefault(word, len(words))
        single = np.full(len(words), -1, dtype=np.int64)
        keys, columns = [], []
        for term, column in vocabulary.items():
            first, _, second = term.partition(" ")
            if second:
                keys.append(words[first] * len(words) + words[second])
                columns.append(column)
            else:
                single[words[first]] = column
        order = np.argsort(keys)
        self.words_ = words
        self.single_ = single
        self.pair_keys_ = np.asarray(keys, dtype=np.int64)[order]
        self.pair_columns_ = np.asarray(columns, dtype=np.int64)[order]

    def transform(self, documents: Iterable[str]) -> sp.csr_matrix:
        words = self.words_
        ids: list[int] = []
        lengths: list[int] = []
        for document in documents:
            tokens = _TOKEN.findall(fold(document))
            ids.extend([words.get(token, -1) for token in tokens])
            lengths.append(len(tokens))
        word = np.asarray(ids, dtype=np.int64)
        row = np.repeat(np.arange(len(lengths)), lengths)
        known = word >= 0
        single = np.full(len(word), -1, dtype=np.int64)
        single[known] = self.single_[word[known]]
        rows, columns = [row[single >= 0]], [single[single >= 0]]
        if len(word) > 1 and len(self.pair_keys_):
            pair = known[:-1] & known[1:] & (row[:-1] == row[1:])
            keys = word[:-1][pair] * len(words) + word[1:][pair]
            at = np.minimum(np.searchsorted(self.pair_keys_, keys), len(self.pair_keys_) - 1)
            found = self.pair_keys_[at] == keys
            rows.append(row[:-1][pair][found])
            columns.append(self.pair_columns_[at[found]])
        row_ids, column_ids = np.concatenate(rows), np.concatenate(columns)
        counts = sp.csr_matrix(
            (np.ones(len(row_ids)), (row_ids, column_ids)),
            shape=(len(lengths), len(self.tfidf_.vocabulary_)),
        )
        return _weigh(counts, self.tfidf_.idf_)


class CharGrams(_Fitted):
    """TfidfVectorizer(analyzer=text_grams, sublinear_tf=True)."""

    def fit(self, documents: Iterable[str], y: Any = None) -> CharGrams:
        self._cache().clear()  # ids of a previous vocabulary
        self.tfidf_ = TfidfVectorizer(
            analyzer=text_grams,
            min_df=self.min_df,
            max_features=self.max_features,
            sublinear_tf=True,
        ).fit(documents)
        return self

    def transform(self, documents: Iterable[str]) -> sp.csr_matrix:
        index: dict[str, int] = {}
        words: list[int] = []
        indptr = [0]
        for document in documents:
            words.extend(
                index.setdefault(word, len(index)) for word in _WORD.findall(document.lower())
            )
            indptr.append(len(words))
        per_document = sp.csr_matrix(
            (np.ones(len(words)), np.asarray(words, dtype=np.int64), indptr),
            shape=(len(indptr) - 1, len(index)),
        )
        return _weigh((per_document @ self._grams_of(index)).tocsr(), self.tfidf_.idf_)

    def _grams_of(self, index: dict[str, int]) -> sp.csr_matrix:
        """(words x n-grams): how often each vocabulary n-gram occurs in each word."""
        cache = self._cache()
        vocabulary = self.tfidf_.vocabulary_
        if len(cache) + len(index) > CACHE_WORDS:
            cache.clear()
        rows = []
        for word in index:  # in index order
            ids = cache.get(word)
            if ids is None:
                ids = cache[word] = np.array(
                    [vocabulary[gram] for gram in word_grams(word) if gram in vocabulary],
                    dtype=np.int32,
                )
            rows.append(ids)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(ids) for ids in rows], out=indptr[1:])
        ids = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)
        return sp.csr_matrix((np.ones(len(ids)), ids, indptr), shape=(len(rows), len(vocabulary)))

    def _cache(self) -> dict[str, np.ndarray[Any, Any]]:
        cache: dict[str, np.ndarray[Any, Any]] | None = self.__dict__.get("_words")
        if cache is None:
            cache = self.__dict__["_words"] = {}
        return cache

    def __getstate__(self) -> dict[str, Any]:
        # The cache is a runtime aid, never stored with the model.
        state = dict(self.__dict__)
        state.pop("_words", None)
        return state
