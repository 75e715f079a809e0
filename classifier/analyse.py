"""Everything nextround decides about one message: the model's verdict plus extraction."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nextround.classifier.extract import choose_reply_to, extract
from nextround.classifier.inference import Prediction, RejectionModel
from nextround.classifier.message import Address, Message
from nextround.classifier.verdict import JOB_LABELS, Analysis

# Given a company name, the people who wrote about it before (most recent first).
EarlierContacts = Callable[[str | None, Message], Sequence[Address]]


def no_earlier_contacts(company: str | None, message: Message) -> Sequence[Address]:
    return ()


def analyse(
    messages: Sequence[Message],
    model: RejectionModel,
    earlier_contacts: EarlierContacts = no_earlier_contacts,
    user_addresses: Sequence[str] = (),
) -> list[Analysis]:
    predictions = model.predict(messages, user_addresses)
    return [
        combine(message, prediction, earlier_contacts)
        for message, prediction in zip(messages, predictions, strict=True)
    ]


def combine(
    message: Message,
    prediction: Prediction,
    earlier_contacts: EarlierContacts,
    extracted: tuple[str | None, str | None] | None = None,
) -> Analysis:
    """The verdict with what the mail names; `extracted` is (company, role) when they were
    found already (`extract`)."""
    job_mail = prediction.label in JOB_LABELS
    company, role = (extracted or extract(message)) if job_mail else (None, None)
    reply_to = None
    if prediction.is_rejection:
        reply_to = choose_reply_to(message, earlier_contacts(company, message))
    return Analysis(
        label=prediction.label,
        is_rejection=prediction.is_rejection,
        score=prediction.score,
        stage=prediction.stage,
        company=company,
        role=role,
        reply_to=reply_to,
        no_feedback_policy=prediction.no_feedback_policy,
    )
