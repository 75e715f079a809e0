"""Plain text from mail bodies: HTML turned into text, bounded in size."""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import re
import threading
from collections.abc import Mapping

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
    before Python 3.13.4, 35 s for 200 KB of `<!--`, and some input makes it raise.)"""

    def __init__(self) -> None:
        # Characters of HTML this parser has been fed, all documents together: libxml2 keeps
        # every tag and attribute name it meets for as long as the thread lives.
        self.fed = 0
        self._begin()
        self.parser = etree.HTMLParser(target=self, encoding="utf-8", no_network=True)

    def _begin(self) -> None:
        """The state of a document, before its first event."""
        self.parts: list[str] = []
        self.size = 0
        self.skipping = 0
        self.depth = 0  # elements open: libxml2 reports the ones it closes itself too
        self.raw = 0  # raw-text elements open (<script>, <title>...): no tags read inside
        self.closed_p = False  # the last event ended a paragraph

    @property
    def spent(self) -> bool:
        """Fed more than MAX_FED: no more documents for this one."""
        return self.fed > MAX_FED

    def text(self, html: str, at_least: int | None) -> str:
        self._begin()
        try:
            text = self._read(html, at_least)
        finally:
            with contextlib.suppress(etree.LxmlError):
                self.parser.close()  # hands over the text it holds; ready for the next one
        return text if text is not None else _layout(self.parts)

    def _read(self, html: str, at_least: int | None) -> str | None:
        """Feeds the parser `html`: the text once `at_least` characters of it are certain,
        else None (all of it was fed). Pieces end at the same places whatever `at_least` is,
        so a document too deep to parse in one go is cut at the same places too."""
        start = 0
        enough = at_least  # the text length at which to lay it out and look
        while start < len(html):
            # Pieces end before a "<": no character reference or tag is split between two.
            end = html.find("<", start + _CHUNK)
            end = len(html) if end < 0 else end
            # End tags HTML5 reads otherwise, where libxml2 drops them: "</br>" is a line
            # break and a stray "</p>" an empty paragraph. An ATS that writes either between
            # sentences would have its words run together ("InitechAfter"). A match holds
            # one "<", at its start, and a piece ends before one: no match spans two pieces.
            piece = _END_P.sub(_END_P_AS, _END_BR.sub("<br>", html[start:end]))
            self.fed += len(piece)
            # Bytes in the parser's encoding, so a <meta charset> in the HTML changes nothing;
            # a lone surrogate becomes U+FFFD.
            self.parser.feed(piece.encode("utf-8", "surrogatepass"))
            start = end
            if self.depth > MAX_DEPTH and not self.raw:
                # libxml2 searches the open elements for many a tag: quadratic time this deep.
                # The rest is read as a document of its own, with none open. Not inside raw
                # text, which the new document would read as markup (libxml2 reads no tags
                # there, so waiting for its end costs nothing).
                with contextlib.suppress(etree.LxmlError):
                    self.parser.close()
                self.depth = self.raw = 0
            # The parser hands over text in order and the layout below only ever changes the
            # tail, so the text of what it has read is a prefix of the whole text.
            if at_least is not None and enough is not None and self.size >= enough:
                if start < len(html) and len(text := _layout(self.parts)) >= at_least:
                    return text
                # Mostly white space, which the layout drops: look again only when the text
                # has doubled, so laying it out stays linear in all.
                enough = 2 * self.size
        return None

    # -- the parser's target ----------------------------------------------------------------

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:  # lxml: read-only
        if tag == _AFTER_P:
            # Right after </p> in the HTML: a stray </p> (which libxml2 drops) breaks the
            # line, as HTML5 reads it; after a paragraph that ended, nothing more.
            if not self.closed_p and not self.skipping:
                self.parts.append("\n")
            return
        self.closed_p = False
        self.depth += 1
        if tag in _RAW_TEXT:
            self.raw += 1
        if tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def end(self, tag: str) -> None:
        if tag == _AFTER_P:
            return
        self.closed_p = tag == "p"
        self.depth -= 1
        if tag in _RAW_TEXT and self.raw:
            self.raw -= 1
        if tag in _VOID_TAGS:
            return  # a line break for <br> and for <br/> alike: the start did it
        if tag in _SKIPPED_TAGS and self.skipping:
            self.skipping -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def data(self, data: str) -> None:
        self.closed_p = False
        if _AFTER_P_TAG in data:  # raw text (<textarea>, <xmp>) shows what it is given
            data = data.replace(_AFTER_P_TAG, "")
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
    html = html[: MAX_TEXT_CHARS * 10]
    if not html:
        return ""  # lxml refuses to close a parser fed nothing ("no element found")
    # lxml inspects a new target on its first feed, most of the time spent on a short mail:
    # each thread reuses one reader.
    reader: _Reader | None = getattr(_readers, "reader", None)
    if reader is None:
        reader = _readers.reader = _Reader()
    if reader.spent:
        return _parsed_elsewhere(html, at_least)
    return reader.text(html, at_least)


def _parsed_elsewhere(html: str, at_least: int | None) -> str:
    """The text of `html`, read by the one parsing thread that can end (see `_Parsing`)."""
    global _parsing
    with _parsing_lock:
        parsing = _parsing = _parsing or _Parsing()
        try:
            text = parsing.text(html, at_least)
        except BaseException:
            parsing.retired = True  # whatever it was, the next document starts afresh
            raise
        finally:
            if parsing.retired:
                parsing.jobs.put(None)  # it ends once done with what it has
                _parsing = None
    if parsing.retired:
        parsing.thread.join()
        gc.collect()  # an lxml parser is a reference cycle: its names go now, not later
    return text


class _Parsing:
    """A thread that parses HTML for threads whose own parser has read MAX_FED characters.

    libxml2 keeps every tag and attribute name it meets for as long as the thread that met
    it lives; hostile mail makes up new ones by the thousand. So each thread parses with
    its own parser until it has read MAX_FED characters, then hands its HTML to this
    thread, which ends in its turn after MAX_FED, names and all; the next document starts
    another. The hand-over costs about 40 us a document, which is why threads do not all
    parse here from the start.
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[
            tuple[str, int | None, queue.SimpleQueue[str | BaseException]] | None
        ] = queue.SimpleQueue()
        self.retired = False
        self.thread = threading.Thread(target=self._serve, name="nextround-html", daemon=True)
        self.thread.start()

    def text(self, html: str, at_least: int | None) -> str:
        # An answer queue per document: a caller interrupted while it waits leaves its
        # answer where no later caller looks.
        answers: queue.SimpleQueue[str | BaseException] = queue.SimpleQueue()
        self.jobs.put((html, at_least, answers))
        answer = answers.get()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _serve(self) -> None:
        reader: _Reader | BaseException
        try:
            reader = _Reader()
        except BaseException as error:  # noqa: BLE001 - each caller's to raise
            reader = error
        while (job := self.jobs.get()) is not None:
            html, at_least, answers = job
            try:
                if isinstance(reader, BaseException):
                    raise reader
                answer: str | BaseException = reader.text(html, at_least)
            except BaseException as error:  # noqa: BLE001 - the caller's to raise
                answer = error
            # Before the answer: the caller, who holds the lock, looks right after it.
            spent = isinstance(reader, BaseException) or reader.spent
            self.retired = self.retired or spent
            answers.put(answer)


_readers = threading.local()  # each thread's own _Reader
_parsing: _Parsing | None = None
_parsing_lock = threading.Lock()


def _after_fork() -> None:
    """A forked child has no parsing thread, and may have a lock held by a thread it lacks."""
    global _parsing, _parsing_lock
    _parsing, _parsing_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


_CHUNK = 2_048
# Elements open at once beyond which the rest of a document is parsed as a new one.
MAX_DEPTH = 512
# Characters of HTML one thread's parser reads before another takes over. A megabyte of
# made-up tag and attribute names grows libxml2's store of them by about 7 MB; real mail
# repeats a few hundred names, and 2 million characters are days of a daemon's mail.
MAX_FED = 2_000_000
_END_BR = re.compile(r"</br(?:[\t\n\f\r /][^<>]*)?>", re.IGNORECASE)  # HTML's white space
_END_P = re.compile(r"</p(?:[\t\n\f\r /][^<>]*)?>", re.IGNORECASE)
_AFTER_P = "nextround-after-p"
_AFTER_P_TAG = f"<{_AFTER_P}/>"
_END_P_AS = "</p>" + _AFTER_P_TAG
# Elements whose content libxml2 reads as text, tags and all.
_RAW_TEXT = frozenset("script style textarea title xmp iframe noembed noframes plaintext".split())


def _layout(parts: list[str]) -> str:
    lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# Three line breaks or more. Written with a literal start, it is searched for quickly, not
# tried at every character (as "\n{3,}" is).
_BLANK_LINES = re.compile("\n\n\n+")
