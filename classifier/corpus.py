"""The training corpus shipped with nextround, and the user's own examples.

The corpus is JSON Lines under `classifier/corpus/`, written by the project in its own words.
The user adds examples as .eml files in `<dir>/<label>/` (corrections made with
`nextround label`, and `[classifier] extra_examples`).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.utils import getaddresses
from importlib import resources
from pathlib import Path

from nextround.classifier.message import Address, Message, one_line
from nextround.classifier.text import html_to_text

LABELS = ("rejection", "closed", "other")
STAGES = ("application", "interview")
# The held-out split: this share of the shipped corpus is never used to train the model that
# `bench/classify_eval.py` measures. Chosen by a hash of the id, so it is stable.
HELD_OUT_PERCENT = 20


@dataclass(frozen=True)
class Example:
    id: str
    message: Message
    label: str
    stage: str | None = None
    no_feedback_policy: bool = False
    company: str | None = None
    role: str | None = None
    contact: str | None = None
    lang: str = "en"
    category: str = ""

    @property
    def held_out(self) -> bool:
        return zlib.crc32(self.id.encode()) % 100 < HELD_OUT_PERCENT


def corpus_files() -> list[Path]:
    folder = resources.files("nextround.classifier").joinpath("corpus")
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".jsonl"))


def load_corpus(files: Iterable[Path] | None = None) -> list[Example]:
    examples = []
    for path in corpus_files() if files is None else files:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    examples.append(_from_row(json.loads(line), f"{path.name}:{number}"))
    return examples


def _addresses(value: str | None) -> tuple[Address, ...]:
    return tuple(
        Address(name=one_line(name), email=email.lower())
        for name, email in getaddresses([value or ""])
        if "@" in email
    )


def _from_row(row: dict[str, object], where: str) -> Example:
    label = str(row["label"])
    if label not in LABELS:
        raise ValueError(f"{where}: unknown label {label!r}")
    text = row.get("text") or html_to_text(str(row.get("html") or ""))
    senders = _addresses(str(row.get("from") or ""))
    message = Message(
        message_id=f"<{row['id']}@corpus.nextround.invalid>",
        subject=one_line(str(row.get("subject") or "")),
        from_=senders[0] if senders else None,
        reply_to=_addresses(_optional(row.get("reply_to"))),
        to=_addresses(_optional(row.get("to"))),
        text=str(text),
    )
    stage = _optional(row.get("stage"))
    return Example(
        id=str(row["id"]),
        message=message,
        label=label,
        stage=stage if label == "rejection" else None,
        no_feedback_policy=bool(row.get("no_feedback_policy")),
        company=_optional(row.get("company")),
        role=_optional(row.get("role")),
        contact=_optional(row.get("contact")),
        lang=str(row.get("lang") or "en"),
        category=str(row.get("category") or ""),
    )


def _optional(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def load_eml_examples(
    folder: Path, parse: Callable[[bytes], Message], source: str
) -> Iterator[Example]:
    """`folder/<label>/*.eml`, parsed with `parse`; unreadable files are skipped by the caller."""
    for label in LABELS:
        for path in sorted((folder / label).glob("*.eml")):
            message = parse(path.read_bytes())
            yield Example(id=f"{source}:{label}/{path.name}", message=message, label=label)


def fingerprint(paths: Iterable[Path], *extra: str) -> str:
    """A hash of the files' names and contents plus `extra`: a change means retrain."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as error:  # an example training skips, and says why; readable, it counts
            digest.update(f"unreadable: {error.errno}".encode())
    for value in extra:
        digest.update(value.encode() + b"\0")
    return digest.hexdigest()[:16]
