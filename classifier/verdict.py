"""What nextround concluded about a message; light enough for the store to import."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Labels of mail about a job application (the rest is "other").
JOB_LABELS = ("rejection", "closed")


@dataclass(frozen=True)
class Analysis:
    label: str
    is_rejection: bool
    score: float
    stage: str | None
    company: str | None
    role: str | None
    reply_to: str | None
    no_feedback_policy: bool

    @property
    def job_mail(self) -> bool:
        return self.label in JOB_LABELS

    def as_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "is_rejection": self.is_rejection,
            "score": self.score,
            "stage": self.stage,
            "company": self.company,
            "role": self.role,
            "reply_to": self.reply_to,
            "no_feedback_policy": self.no_feedback_policy,
        }


_LEGAL_SUFFIX = re.compile(
    r"\b(?:inc|llc|ltd|limited|gmbh|ag|se|sa|sas|sarl|bv|b\.v|nv|plc|co|corp|corporation|"
    r"company|group|kg|ug|srl|spa|ab|as|oy|pty)\b\.?",
    re.IGNORECASE,
)


def company_key(company: str | None) -> str:
    """A comparable form of a company name: case, punctuation and legal form removed."""
    if not company:
        return ""
    without_suffix = _LEGAL_SUFFIX.sub(" ", company.lower())
    return re.sub(r"[\W_]+", "", without_suffix)
