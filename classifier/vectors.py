"""TF-IDF vectors for the classifier, counted in numpy, with no scikit-learn at run time.

`TfidfVectorizer` cuts every document into n-grams and looks each one up in its vocabulary
in Python: most of the classifier's time. Training fits TfidfVectorizers (classifier/model.py);
these indexes are built from their vocabularies and idf and give the same numbers (a unit
test holds them to that), but count differently:
- `WordIndex` (words and word pairs) maps each word to an integer once and finds the pairs
  as integer keys with one sorted search over the whole batch;
- `GramIndex` (character n-grams within words) keeps each word's n-gram ids, counts words per
  document, and lets one sparse product (documents x words) @ (words x n-grams) count them;
- `TokenIndex` (the sender's tokens) counts whitespace-separated tokens, as they are.
The daemon loads only these: importing scikit-learn alone would cost it 60 MB of memory.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from itertools import chain, repeat
from typing import Any

import numpy as np
import scipy.sparse as sp

# Words whose n-gram ids `GramIndex` keeps between calls; cleared when full, so memory stays
# bounded (about 6 MB at the limit).
CACHE_WORDS = 20_000
_WORD = re.compile(r"\w+")
# TfidfVectorizer's default token_pattern, r"(?u)\b\w\w+\b", without the word boundaries:
# \w\w+ is greedy, so every match starts and ends at one anyway, and it is found faster.
_TOKEN = re.compile(r"\w\w+")
# In ASCII text every character but a word character (\w) made a space: then split() finds
# the same words as _WORD, faster than any regular expression.
_ASCII_SPACES = str.maketrans(
    {chr(code): " " for code in range(128) if not (chr(code).isalnum() or chr(code) == "_")}
)


def words(text: str) -> list[str]:
    """The words of a text (_WORD)."""
    return text.translate(_ASCII_SPACES).split() if text.isascii() else _WORD.findall(text)


def tokens(text: str) -> list[str]:
    """TfidfVectorizer's tokens of a text (_TOKEN)."""
    if text.isascii():
        return [word for word in text.translate(_ASCII_SPACES).split() if len(word) > 1]
    return _TOKEN.findall(text)


# Precomposed accented Latin letters to their base letters (é -> e, Ł stays Ł): what
# TfidfVectorizer's strip_accents="unicode" does for them; other scripts and decomposed
# accents are left as they are.
_FOLD = {
    chr(code): "".join(
        part for part in unicodedata.normalize("NFKD", chr(code)) if not unicodedata.combining(part)
    )
    for code in range(0xC0, 0x250)
}
# Runs of those letters. str.translate would look up every character of a non-ASCII text
# (several times slower); a pattern that starts with a character set skips to each run.
_ACCENTED = re.compile("[\u00c0-\u024f][\u00c0-\u024f]*")


def _folded(run: re.Match[str]) -> str:
    return "".join([_FOLD[letter] for letter in run.group()])


def fold(text: str) -> str:
    """Lower case without accents: how words are compared."""
    lowered = text.lower()
    return lowered if lowered.isascii() else _ACCENTED.sub(_folded, lowered)


def word_grams(word: str, low: int = 3, high: int = 5) -> list[str]:
    """The n-grams of one word padded with a space on each side: " wor", "ord ", ..."""
    padded = f" {word} "
    return [padded[i : i + n] for n in range(low, high + 1) for i in range(len(padded) - n + 1)]


def text_grams(text: str) -> list[str]:
    """All n-grams of a text's words: the analyzer `GramIndex`'s vocabulary is fitted with."""
    return [gram for word in _WORD.findall(text.lower()) for gram in word_grams(word)]


def weigh(
    counts: sp.csr_matrix, idf: np.ndarray[Any, Any] | None, *, sublinear: bool = True
) -> sp.csr_matrix:
    """What TfidfVectorizer does to counts: 1 + log(tf) (sublinear_tf), times idf (use_idf),
    l2-normalised rows: its `normalize`, without the input checks that cost more than it."""
    counts.sum_duplicates()
    counts.sort_indices()
    if sublinear:
        np.log(counts.data, out=counts.data)
        counts.data += 1
    if idf is not None:
        counts.data *= idf[counts.indices]
    lengths = np.diff(counts.indptr)
    rows = np.repeat(np.arange(counts.shape[0]), lengths)
    norms = np.sqrt(np.bincount(rows, weights=counts.data**2, minlength=counts.shape[0]))
    norms[norms == 0] = 1.0
    counts.data /= np.repeat(norms, lengths)
    return counts


def counted(
    rows: np.ndarray[Any, Any], columns: np.ndarray[Any, Any], documents: int, width: int
) -> sp.csr_matrix:
    """The (documents x width) matrix counting each (row, column) pair, built sorted and
    summed (what `csr_matrix((ones, (rows, columns)))` and `sum_duplicates` give, faster)."""
    codes, counts = np.unique(rows * width + columns, return_counts=True)
    indptr = np.searchsorted(codes, np.arange(documents + 1) * width)
    matrix = sp.csr_matrix(
        (counts.astype(np.float64), codes % width, indptr), shape=(documents, width)
    )
    matrix.has_canonical_format = True
    return matrix


class WordIndex:
    """TfidfVectorizer(ngram_range=(1, 2), preprocessor=fold, sublinear_tf=True)'s transform,
    from its vocabulary and idf."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray[Any, Any]) -> None:
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
        self.words = words
        self.single = single
        self.pair_keys = np.asarray(keys, dtype=np.int64)[order]
        self.pair_columns = np.asarray(columns, dtype=np.int64)[order]
        self.idf = np.asarray(idf, dtype=np.float64)
        self.width = len(vocabulary)

    def transform(self, documents: Iterable[str]) -> sp.csr_matrix:
        known_words = self.words
        ids: list[int] = []
        lengths: list[int] = []
        for document in documents:
            found = tokens(fold(document))
            ids.extend(map(known_words.get, found, repeat(-1)))
            lengths.append(len(found))
        word = np.asarray(ids, dtype=np.int64)
        count = len(lengths)
        row = np.repeat(np.arange(count), lengths)
        known = word >= 0
        single = np.full(len(word), -1, dtype=np.int64)
        single[known] = self.single[word[known]]
        rows, columns = [row[single >= 0]], [single[single >= 0]]
        if len(word) > 1 and len(self.pair_keys):
            pair = known[:-1] & known[1:] & (row[:-1] == row[1:])
            # Looked up in order: a sorted search for sorted keys stays in the cache (several
            # times faster). Each key carries its row through the sort.
            keyed = word[:-1][pair] * len(known_words) + word[1:][pair]
            keyed = keyed * count + row[:-1][pair]
            keys, pair_rows = np.divmod(np.sort(keyed), count)
            at = np.minimum(np.searchsorted(self.pair_keys, keys), len(self.pair_keys) - 1)
            hit = self.pair_keys[at] == keys
            rows.append(pair_rows[hit])
            columns.append(self.pair_columns[at[hit]])
        return weigh(
            counted(np.concatenate(rows), np.concatenate(columns), count, self.width), self.idf
        )

    def names(self) -> list[str]:
        """The feature name of each column, as the vocabulary writes it."""
        words = list(self.words)
        names = [""] * self.width
        for word, column in zip(words, self.single, strict=True):
            if column >= 0:
                names[column] = word
        for key, column in zip(self.pair_keys, self.pair_columns, strict=True):
            first, second = divmod(int(key), len(words))
            names[column] = f"{words[first]} {words[second]}"
        return names


class _Vocabulary:
    """An index whose features are a vocabulary's terms, each its own column."""

    def __init__(self, vocabulary: dict[str, int]) -> None:
        # Plain ints: numpy.int64 values cost 32 bytes each against 28 for small ints shared
        # by the interpreter, a few MB of the daemon's memory.
        self.vocabulary = {term: int(column) for term, column in vocabulary.items()}
        self.width = len(vocabulary)

    def names(self) -> list[str]:
        names = [""] * self.width
        for term, column in self.vocabulary.items():
            names[column] = term
        return names


class GramIndex(_Vocabulary):
    """TfidfVectorizer(analyzer=text_grams, sublinear_tf=True)'s transform, from its
    vocabulary and idf."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray[Any, Any]) -> None:
        super().__init__(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self._words: dict[str, np.ndarray[Any, Any]] = {}

    def transform(self, documents: Iterable[str]) -> sp.csr_matrix:
        found = [words(document.lower()) for document in documents]
        # Each distinct word once, in order of appearance; then every word's number, in C.
        index = {word: number for number, word in enumerate(dict.fromkeys(chain(*found)))}
        numbers = list(map(index.__getitem__, chain(*found)))
        indptr = np.zeros(len(found) + 1, dtype=np.int64)
        np.cumsum([len(document) for document in found], out=indptr[1:])
        per_document = sp.csr_matrix(
            (np.ones(len(numbers)), np.asarray(numbers, dtype=np.int64), indptr),
            shape=(len(found), len(index)),
        )
        return weigh((per_document @ self._grams_of(index)).tocsr(), self.idf)

    def _grams_of(self, index: dict[str, int]) -> sp.csr_matrix:
        """(words x n-grams): how often each vocabulary n-gram occurs in each word."""
        cache, vocabulary = self._words, self.vocabulary
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
        return sp.csr_matrix((np.ones(len(ids)), ids, indptr), shape=(len(rows), self.width))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_words": {}}  # the cache is a run-time aid, never stored


class TokenIndex(_Vocabulary):
    """TfidfVectorizer(token_pattern=r"\\S+", lowercase=False, use_idf=False)'s transform:
    whitespace-separated tokens as they are, counted and l2-normalised."""

    def transform(self, documents: Iterable[str]) -> sp.csr_matrix:
        columns: list[int] = []
        indptr = [0]
        for document in documents:
            found = (self.vocabulary.get(token) for token in document.split())
            columns.extend(column for column in found if column is not None)
            indptr.append(len(columns))
        counts = sp.csr_matrix(
            (np.ones(len(columns)), np.asarray(columns, dtype=np.int64), indptr),
            shape=(len(indptr) - 1, self.width),
        )
        return weigh(counts, None, sublinear=False)
