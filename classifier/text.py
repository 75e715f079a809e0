"""Plain text from mail bodies: HTML turned into text, bounded in size."""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any

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


class _TextExtractor:
    """lxml parser target: libxml2 reads the HTML as browsers do, in linear time. (The
    standard library's html.parser takes quadratic time over an unclosed comment or tag
    before Python 3.13.4, a minute for 200 KB of `<!--`, and some input makes it raise.)"""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.skipping = 0

    def reset(self) -> None:
        self.parts, self.size, self.skipping = [], 0, 0

    def start(self, tag: str, attrib: Any) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def end(self, tag: str) -> None:
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
    html = html[: MAX_TEXT_CHARS * 10]
    if not html:
        return ""  # lxml refuses to close a parser fed nothing ("no element found")
    parser, extractor = _reader()
    extractor.reset()
    try:
        text = _read(parser, extractor, html, at_least)
    finally:
        with contextlib.suppress(etree.LxmlError):
            parser.close()  # hands over the text it still holds; ready for the next document
    return text if text is not None else _layout(extractor.parts)


def _reader() -> tuple[etree.HTMLParser, _TextExtractor]:
    """This thread's parser and its target. lxml inspects a new target's methods on its first
    feed, most of the time spent on a short mail: each thread reuses one."""
    reader: tuple[etree.HTMLParser, _TextExtractor] | None = getattr(_readers, "reader", None)
    if reader is None:
        extractor = _TextExtractor()
        parser = etree.HTMLParser(target=extractor, encoding="utf-8", no_network=True)
        reader = _readers.reader = (parser, extractor)
    return reader


_readers = threading.local()


def _read(
    parser: etree.HTMLParser, extractor: _TextExtractor, html: str, at_least: int | None
) -> str | None:
    """Feeds the parser `html`: the text once `at_least` characters of it are certain, else
    None (all of it was fed)."""
    step = len(html) if at_least is None else max(2 * at_least, _CHUNK)
    start = 0
    while start < len(html):
        # Pieces end before a "<": no character reference or tag is split between two.
        end = html.find("<", start + step)
        end = len(html) if end < 0 else end
        # Bytes in the parser's encoding, so a <meta charset> in the HTML changes nothing; a
        # lone surrogate becomes U+FFFD.
        parser.feed(html[start:end].encode("utf-8", "surrogatepass"))
        start = end
        # The parser hands over text in order and the layout below only ever changes the
        # tail, so the text of what it has read is a prefix of the whole text.
        if at_least is not None and extractor.size >= at_least and start < len(html):
            text = _layout(extractor.parts)
            if len(text) >= at_least:
                return text
    return None


_CHUNK = 1_024


def _layout(parts: list[str]) -> str:
    lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# Three line breaks or more. Written with a literal start, it is searched for quickly, not
# tried at every character (as "\n{3,}" is).
_BLANK_LINES = re.compile("\n\n\n+")
