"""Plain text from mail bodies: HTML turned into text, bounded in size."""

from __future__ import annotations

import contextlib
import gc
import html as entities
import os
import queue
import re
import threading

from lxml import etree

# Enough for any real mail's words; bounds memory and classifier time on hostile input.
MAX_TEXT_CHARS = 100_000


# Elements after which text continues on a new line.
_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt footer form h1 h2 h3 h4 h5 h6 header hr li "
    "main nav ol p pre section table td th tr ul".split()
)
_SKIPPED_TAGS = frozenset(("script", "style", "head", "title", "template", "noscript"))
_VOID_TAGS = frozenset(("br", "hr"))


class _Reader:
    """An lxml parser and its target: libxml2 reads the HTML as browsers do, in linear time.
    (The standard library's html.parser takes quadratic time over an unclosed comment or tag
    before Python 3.13.4, a minute for 200 KB of `<!--`, and some input makes it raise.)"""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.skipping = 0
        self.depth = 0  # elements open: libxml2 reports the ones it closes itself too
        # Every tag and attribute name this thread's parser has met: libxml2 keeps them all,
        # for as long as the thread lives.
        self.names: set[str] = set()
        self.spent = False  # met more than MAX_NAMES: no more documents for this one
        self.parser = etree.HTMLParser(target=self, encoding="utf-8", no_network=True)

    def text(self, html: str, at_least: int | None) -> str:
        self.parts, self.size, self.skipping, self.depth = [], 0, 0, 0
        try:
            text = self._read(html, at_least)
        finally:
            with contextlib.suppress(etree.LxmlError):
                self.parser.close()  # hands over the text it holds; ready for the next one
        return text if text is not None else _layout(self.parts)

    def _read(self, html: str, at_least: int | None) -> str | None:
        """Feeds the parser `html`: the text once `at_least` characters of it are certain,
        else None (all of it was fed). Pieces end at the same places whatever `at_least` is,
        so a document too deep to parse is cut over to stripping at the same place too."""
        start = 0
        while start < len(html):
            # Pieces end before a "<": no character reference or tag is split between two.
            end = html.find("<", start + _CHUNK)
            end = len(html) if end < 0 else end
            # Bytes in the parser's encoding, so a <meta charset> in the HTML changes nothing;
            # a lone surrogate becomes U+FFFD.
            self.parser.feed(html[start:end].encode("utf-8", "surrogatepass"))
            start = end
            if self.depth > MAX_DEPTH and start < len(html):
                # libxml2 searches the open elements for many a tag: quadratic time this deep.
                # No real mail is; the words of the rest are still read, without the markup.
                self.parser.close()  # hands over the text it holds, which comes first
                self.data(_stripped(html[start:])[: max(0, MAX_TEXT_CHARS - self.size)])
                return _layout(self.parts)
            # The parser hands over text in order and the layout below only ever changes the
            # tail, so the text of what it has read is a prefix of the whole text.
            if at_least is not None and self.size >= at_least and start < len(html):
                text = _layout(self.parts)
                if len(text) >= at_least:
                    return text
        return None

    # -- the parser's target ----------------------------------------------------------------

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.depth += 1
        self.names.add(tag)
        self.names.update(attrib)
        if tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def end(self, tag: str) -> None:
        self.depth -= 1
        if tag in _VOID_TAGS:
            return  # a line break for <br> and for <br/> alike: the start did it
        if tag in _SKIPPED_TAGS and self.skipping:
            self.skipping -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def data(self, data: str) -> None:
        if not self.skipping and self.size < MAX_TEXT_CHARS:
            self.parts.append(data)
            self.size += len(data)

    def close(self) -> None:
        pass


def html_to_text(html: str, at_least: int | None = None) -> str:
    """Readable text from HTML mail: block elements become line breaks, scripts vanish.

    With `at_least`, the HTML is read only until that many characters of text are certain:
    the result is then a prefix of the whole text, at least that long (or the whole text).
    """
    html = _END_TAGS.sub(_as_browsers_read, html[: MAX_TEXT_CHARS * 10])
    if not html:
        return ""  # lxml refuses to close a parser fed nothing ("no element found")
    reader: _Reader | None = getattr(_readers, "reader", None)
    if reader is None:
        reader = _readers.reader = _Reader()
    if reader.spent:
        return _parsed_elsewhere(html, at_least)
    text = reader.text(html, at_least)
    if len(reader.names) > MAX_NAMES:
        reader.spent, reader.names = True, set()  # its parser keeps them: we need not
    return text


def _parsed_elsewhere(html: str, at_least: int | None) -> str:
    """The text of `html`, read by the one parsing thread that can end (see `_Parsing`)."""
    global _parsing
    with _parsing_lock:
        if _parsing is None:
            _parsing = _Parsing()
        text = _parsing.text(html, at_least)
        if _parsing.retired:
            _parsing.thread.join()
            _parsing = None
            gc.collect()  # an lxml parser is a reference cycle: its names go now, not later
    return text


class _Parsing:
    """A thread that parses HTML for threads whose own parser has met MAX_NAMES names.

    libxml2 keeps every tag and attribute name it meets for as long as the thread that met
    it lives. Real mail holds a few hundred; hostile mail makes up new ones by the thousand
    (7 MB a megabyte). Each thread parses with its own parser until it has met MAX_NAMES;
    then it hands its HTML to this thread, which ends in its turn at MAX_NAMES, names and
    all, and the next document starts another. The hand-over costs about 40 us a document,
    which is why threads do not all parse here from the start.
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[str, int | None]] = queue.SimpleQueue()
        self.answers: queue.SimpleQueue[str | BaseException] = queue.SimpleQueue()
        self.retired = False
        self.thread = threading.Thread(target=self._serve, name="nextround-html", daemon=True)
        self.thread.start()

    def text(self, html: str, at_least: int | None) -> str:
        self.jobs.put((html, at_least))
        answer = self.answers.get()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _serve(self) -> None:
        reader = _Reader()
        while not self.retired:
            html, at_least = self.jobs.get()
            try:
                answer: str | BaseException = reader.text(html, at_least)
            except BaseException as error:  # noqa: BLE001 - the caller's to raise
                answer = error
            # Before the answer: the caller, who holds the lock, looks right after it.
            self.retired = len(reader.names) > MAX_NAMES
            self.answers.put(answer)


_readers = threading.local()  # each thread's own _Reader
_parsing: _Parsing | None = None
_parsing_lock = threading.Lock()


def _after_fork() -> None:
    """A forked child has no parsing thread, and may have a lock held by a thread it lacks."""
    global _parsing, _parsing_lock
    _parsing, _parsing_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


_CHUNK = 2_048
# Elements open at once beyond which the rest of a document is stripped, not parsed.
MAX_DEPTH = 512
# Distinct tag and attribute names a thread's parser may keep (real mail: a few hundred).
MAX_NAMES = 10_000
_TAG = re.compile(r"<[^<>]*>")
# End tags HTML5 reads otherwise than as end tags, where libxml2 drops them: "</br>" is a
# line break and a stray "</p>" an empty paragraph. An ATS that writes "</br>" between
# sentences would otherwise have its words run together ("InitechAfter").
_END_TAGS = re.compile(r"</(br|p)(?:[\s/][^<>]*)?>", re.IGNORECASE)


def _as_browsers_read(tag: re.Match[str]) -> str:
    # After "</p>", a space: nothing where the paragraph was open (the layout drops it), the
    # words kept apart where it was not.
    return "<br>" if tag.group(1).lower() == "br" else tag.group() + " "


def _stripped(html: str) -> str:
    """The words of HTML without its markup, for what the parser is not given."""
    return entities.unescape(_TAG.sub(" ", html))


def _layout(parts: list[str]) -> str:
    lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# Three line breaks or more. Written with a literal start, it is searched for quickly, not
# tried at every character (as "\n{3,}" is).
_BLANK_LINES = re.compile("\n\n\n+")
