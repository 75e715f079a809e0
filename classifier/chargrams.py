"""Character n-grams of words, TF-IDF weighted, computed a word at a time.

Character n-grams carry the classifier across inflections and languages, but
`TfidfVectorizer(analyzer="char_wb")` cuts every word of every document into n-grams and
looks each one up in its vocabulary in Python: most of the classifier's time. A word's
n-grams depend on the word alone and mail repeats a small set of words, so this vectoriser
counts words per document, keeps each word's n-gram ids, and lets one sparse product
(documents x words) @ (words x n-grams) do the counting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

# Words whose n-gram ids are kept between calls; cleared when full, so memory stays bounded
# (about 6 MB at the limit).
CACHE_WORDS = 20_000
_WORD = re.compile(r"\w+")


def word_grams(word: str, low: int = 3, high: int = 5) -> list[str]:
    """The n-grams of one word padded with a space on each side: " wor", "ord ", ..."""
    padded = f" {word} "
    return [padded[i : i + n] for n in range(low, high + 1) for i in range(len(padded) - n + 1)]


def text_grams(text: str) -> list[str]:
    """All n-grams of a text's words: the analyzer the vocabulary is fitted with."""
    return [gram for word in _WORD.findall(text.lower()) for gram in word_grams(word)]


class CharGrams(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """TF-IDF (sublinear tf, l2 norm) over `text_grams`, the same numbers a TfidfVectorizer
    with that analyzer gives, computed without a Python step per n-gram."""

    def __init__(self, min_df: int = 1, max_features: int | None = None) -> None:
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, documents: Iterable[str], y: Any = None) -> CharGrams:
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
        counts = (per_document @ self._grams_of(index)).tocsr()
        counts.sort_indices()
        # What TfidfVectorizer(sublinear_tf=True) does: 1 + log(tf), times idf, l2-normalised.
        np.log(counts.data, out=counts.data)
        counts.data += 1
        counts.data *= self.tfidf_.idf_[counts.indices]
        return normalize(counts, copy=False)

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

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, Any]:
        return np.asarray(self.tfidf_.get_feature_names_out(), dtype=object)

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
