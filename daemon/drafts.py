"""Drafts: render a template, wrap it in a proper MIME reply, and mark it as ours.

Templates come from `templates/` (a file of the same name in `[templates] dir` wins). Values
taken from mail are passed as variables, never as template source, so `{{ ... }}` in a mail
comes out as literal text. Header values are folded to one line before they reach a header.
"""

from __future__ import annotations

import base64
import itertools
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import jinja2

from nextround.classifier.message import (
    Address,
    header_safe,
    one_line,
    plain_address,
    safe_message_id,
)
from nextround.daemon.errors import TemplateError

logger = logging.getLogger(__name__)

HEADER = "X-Nextround-Application"
STEPS = ("request", "follow_up", "thank_you")
NEEDS_CONTACT_MARK = (
    ">>> nextround: no human contact was found for this rejection. Add the recipient's "
    "address in To (and delete this line) before sending. <<<"
)
MAX_REFERENCES = 20
_REPLY_PREFIX = re.compile(
    r"^\s*((re|ré|aw|sv|antw|r|rif|réf|ref|wg|fwd?)\s*(\[\d+\])?\s*:\s*)+", re.I
)
_TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "herr", "frau", "mme", "m", "sr", "sra"}
_NOT_A_PERSON = re.compile(
    r"\b(team|recruit\w*|talent|careers?|jobs?|hiring|hr|people|human|resources|noreply|"
    r"no-reply|notifications?|support|info|acquisition|admin|office|the)\b",
    re.I,
)


@dataclass(frozen=True)
class DraftSpec:
    """Everything a draft needs; `answers` is the Message-ID it replies to."""

    application_id: int
    step: str  # request | follow_up | thank_you
    identity: Address
    to: Address | None
    subject: str
    answers: str
    references: tuple[str, ...]
    variables: dict[str, Any]


def template_name(step: str, stage: str | None) -> str:
    if step == "request":
        return f"feedback_request_{'interview' if stage == 'interview' else 'application'}.txt.j2"
    return f"{step}.txt.j2"


def first_name(contact: Address | None) -> str | None:
    """The first name when the contact's display name looks like a person's, else None."""
    if contact is None or not contact.name or _NOT_A_PERSON.search(contact.name):
        return None
    name = contact.name
    if "," in name:  # "Doe, Jane"
        family, _, given = name.partition(",")
        name = given.strip() or family
    found: list[str] = re.findall(r"[^\W\d_][\w'\u2019-]*", name)
    words = [word for word in found if word.lower().rstrip(".") not in _TITLES]
    if not words or len(words) > 4:
        return None
    first = words[0]
    return first if first[0].isupper() else first.capitalize()


def greeting(contact: Address | None) -> str:
    name = first_name(contact)
    return f"Hi {name}," if name else "Hello,"


def reply_subject(original: str) -> str:
    subject = _REPLY_PREFIX.sub("", one_line(original)).strip()
    return f"Re: {subject}" if subject else "Re: your message"


def is_reply_subject(subject: str) -> bool:
    """Whether a subject starts as replies and forwards do (Re:, AW:, Fwd:...)."""
    return _REPLY_PREFIX.match(one_line(subject)) is not None


def normalised_subject(subject: str) -> str:
    """For matching a sent copy to its draft: no Re:/AW: prefixes, case or spacing."""
    return _REPLY_PREFIX.sub("", one_line(subject)).strip().lower()


class Renderer:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.PackageLoader("nextround.templates", ""))
        self.environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text mail  # noqa: S701
            keep_trailing_newline=True,
            trim_blocks=False,
        )

    def render(self, name: str, variables: dict[str, Any]) -> str:
        try:
            template = self.environment.get_template(name)
            text = template.render(**variables)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {name} not found") from None
        except jinja2.TemplateSyntaxError as error:
            where = error.filename or name
            raise TemplateError(f"{where}:{error.lineno}: {error.message}") from None
        except jinja2.UndefinedError as error:
            raise TemplateError(f"{template.filename or name}: {error.message}") from None
        except Exception as error:  # noqa: BLE001 - a user's template may raise anything
            # Divide by zero, add text to a number, recurse, not be UTF-8: their error, named.
            raise TemplateError(f"{name}: {type(error).__name__}: {error}") from None
        return _tidy(text)

    def check(self) -> None:
        """Render every template with every combination of the values a draft may lack:
        raises the TemplateError a cycle would meet."""
        me, contact = Address("Alex Doe", "me@example.org"), Address("Jane Roe", "j@example.org")
        day = date(2026, 11, 3)
        # Each value a draft may lack, given and missing, in every combination (the
        # templates branch on them): a few hundred renders, a few hundredths of a second.
        for step, stage, to, company, role, rejected, asked, no_feedback in itertools.product(
            ("request", "follow_up", "thank_you"),
            ("interview", "application", None),
            (contact, None),
            ("Acme", None),
            ("Engineer", None),
            (day, None),
            (day, None),
            (False, True),
        ):
            variables = draft_variables(me, to, company, role, stage, no_feedback, rejected, asked)
            self.render(template_name(step, stage), variables)


def _tidy(text: str) -> str:
    """Templates with conditionals leave runs of blank lines; mail wants at most one."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def local_date(moment: datetime, zone: tzinfo | None) -> date:
    """The day `moment` falls on where the user is (`zone`; None: the machine's time zone):
    a note sent at 11 pm in New York was not written "on" the next day's UTC date."""
    return moment.astimezone(zone).date()


def draft_variables(
    identity: Address,
    contact: Address | None,
    company: str | None,
    role: str | None,
    stage: str | None,
    no_feedback_policy: bool,
    rejected_on: date | None = None,
    request_date: date | None = None,
) -> dict[str, Any]:
    return {
        "identity": {"name": identity.name, "email": identity.email},
        "company": one_line(company) if company else None,
        "role": one_line(role) if role else None,
        "stage": stage,
        "contact_first_name": first_name(contact),
        "greeting": greeting(contact),
        "no_feedback_policy": no_feedback_policy,
        "rejected_on": rejected_on.strftime("%d %B %Y").lstrip("0") if rejected_on else None,
        "request_date": request_date.strftime("%d %B").lstrip("0") if request_date else "last week",
    }


def build_draft(spec: DraftSpec, body: str, now: datetime) -> tuple[bytes, str]:
    """The draft as bytes ready to APPEND, and its fresh Message-ID."""
    message = EmailMessage(policy=SMTP)
    # From, To and the threading are written by hand, below: the email package (3.11.7)
    # folds a long quoted display name without its quotes, and its commas then name more
    # recipients; and it writes an id longer than its 78-character lines as an encoded-word.
    lines = [f"From: {_address_line(spec.identity)}"]  # the config holds a plain address
    if spec.to is not None and plain_address(spec.to.email):
        lines.append(f"To: {_address_line(spec.to)}")
    else:
        body = f"{NEEDS_CONTACT_MARK}\n\n{body}"
    message["Subject"] = header_safe(spec.subject)
    message["Date"] = format_datetime(now)
    domain = spec.identity.domain or "nextround.invalid"
    message_id = make_msgid(domain=domain)
    message["Message-ID"] = message_id
    message[HEADER] = header_value(spec.application_id, spec.step)
    message.set_content(body, charset="utf-8")
    answers = safe_message_id(spec.answers)
    if answers:
        # One id a line, as they are (Microsoft 365's and Amazon SES's are 80-90 long).
        chain = [safe_message_id(ref) for ref in spec.references if ref and ref != answers]
        chain = [*[ref for ref in chain if ref][-(MAX_REFERENCES - 1) :], answers]
        lines += [f"In-Reply-To: {answers}", "References: " + "\r\n ".join(chain)]
    head, _, body_bytes = message.as_bytes().partition(b"\r\n\r\n")
    ours = "\r\n".join(lines).encode("ascii")
    return ours + b"\r\n" + head + b"\r\n\r\n" + body_bytes, message_id


def header_value(application_id: int, step: str) -> str:
    return f"{application_id}; step={step}"


def parse_header_value(value: str) -> tuple[int, str] | None:
    match = re.fullmatch(r"\s*(\d+)\s*;\s*step=([a-z_]+)\s*", value or "")
    return (int(match.group(1)), match.group(2)) if match else None


# A display name we write keeps letters, digits, spaces and . ' - (nothing a mail reader
# could take for another address), and at most this many characters.
_NAME_DROPS = re.compile(r"[^\w .'-]+")
MAX_NAME_CHARS = 64
_WORD_BYTES = 45  # of UTF-8 in one encoded-word: 60 of base64, 72 in all (RFC 2047: 75)


def _address_line(address: Address) -> str:
    """`"Name" <local@domain>` for a plain address (`plain_address`): one recipient, whatever
    the name held. A name that is not ASCII is written as encoded-words (RFC 2047)."""
    name = " ".join(_NAME_DROPS.sub(" ", header_safe(address.name)).split())
    name = name[:MAX_NAME_CHARS].strip()
    if not name:
        return f"<{address.email}>"
    if name.isascii():
        return f'"{name}" <{address.email}>'
    words, chunk = [], b""
    for character in name:  # whole characters to a word
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    encoded_words = (f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words)
    return "\r\n ".join(encoded_words) + f" <{address.email}>"
