"""The mail the fault harness delivers: rejections, closed positions, ordinary mail, and the
recruiters' replies to sent feedback requests.

Everything is written in the style of `tests/integration/test_lifecycle_e2e.py`: realistic
bodies from people and from applicant-tracking systems. Rejections are templates filled
with a company and a role, so one run can open dozens of distinct applications; the harness
checks each filled-in mail with the classifier before it delivers it (see `harness.Corpus`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid


@dataclass(frozen=True)
class Company:
    name: str
    domain: str
    recruiter: str  # a person's full name

    @property
    def recruiter_email(self) -> str:
        first, _, last = self.recruiter.lower().partition(" ")
        return f"{first}.{last.replace(' ', '')}@{self.domain}"

    @property
    def recruiter_first(self) -> str:
        return self.recruiter.split()[0]


COMPANIES = (
    Company("Brightloom", "brightloom.io", "Priya Raman"),
    Company("Kestrel Pay", "kestrelpay.com", "Tomasz Nowak"),
    Company("Halden Foods", "haldenfoods.com", "Ingrid Solberg"),
    Company("Orbital Freight", "orbitalfreight.com", "Marcus Bell"),
    Company("Mossgrove Health", "mossgrove.health", "Sana Iqbal"),
    Company("Tidewater Labs", "tidewaterlabs.com", "Elena Moreau"),
    Company("Copperline Energy", "copperline-energy.com", "David Okafor"),
    Company("Nimbus Ledger", "nimbusledger.com", "Hannah Weiss"),
    Company("Fennwick Robotics", "fennwick.ai", "Kenji Watanabe"),
    Company("Saltmarsh Media", "saltmarshmedia.co.uk", "Olivia Hart"),
    Company("Quillstone Software", "quillstone.dev", "Rafael Duarte"),
    Company("Larkspur Bio", "larkspurbio.com", "Grace Liu"),
    Company("Veridian Transit", "veridiantransit.com", "Samuel Adeyemi"),
    Company("Ashgrove Insurance", "ashgrove-insurance.com", "Claire Dubois"),
    Company("Pinecrest Logistics", "pinecrestlogistics.com", "Jonas Lindqvist"),
    Company("Silverfin Analytics", "silverfin-analytics.com", "Amara Nwosu"),
    Company("Harborview Bank", "harborviewbank.com", "Lucia Romano"),
    Company("Glasswing Games", "glasswing.games", "Theo Marchetti"),
    Company("Redwood Civic", "redwoodcivic.org", "Nadia Haddad"),
    Company("Bluefield Retail", "bluefieldretail.com", "Owen Gallagher"),
)

ROLES = (
    "Senior Data Engineer",
    "Product Designer",
    "Backend Engineer",
    "Operations Analyst",
    "Engineering Manager",
    "Site Reliability Engineer",
    "Data Analyst",
    "Technical Writer",
    "Machine Learning Engineer",
    "Product Manager",
    "Frontend Engineer",
    "Security Engineer",
    "Customer Success Manager",
    "Financial Analyst",
)


@dataclass(frozen=True)
class Template:
    name: str
    sender: str  # str.format fields: company, domain, person, pfirst, pemail, role
    subject: str
    body: str
    reply_to: str = ""


REJECTIONS = (
    Template(
        "recruiter-after-interview",
        "{person} <{pemail}>",
        "Your application for {role}",
        "Hi Alex,\n\nThank you for taking the time to interview with our team last week for "
        "the {role} role at {company}. We enjoyed the conversations, but after careful "
        "consideration we have decided to move forward with another candidate whose "
        "experience more closely matches what we need right now.\n\nWe appreciate your "
        "interest in {company} and wish you the best in your search.\n\nBest,\n{person}\n"
        "Talent Partner, {company}\n",
    ),
    Template(
        "greenhouse-after-interview",
        "{company} <no-reply@us.greenhouse-mail.io>",
        "Update on your {company} application",
        "Hi Alex,\n\nThank you for interviewing for the {role} position at {company}. After "
        "careful review, we have decided not to move forward with your candidacy at this "
        "time. We appreciate the time you invested in our process and wish you success in "
        "your search.\n\n{company} Recruiting\n",
    ),
    Template(
        "workday-application",
        "{company} <donotreply@myworkday.com>",
        "Your application to {company}",
        "Dear Alex,\n\nThank you for your interest in the {role} position at {company}. We "
        "have carefully reviewed your application and regret to inform you that we will not "
        "be progressing it further. We wish you every success.\n\n{company} Talent "
        "Acquisition\n",
    ),
    Template(
        "hiring-manager-final-round",
        "{person} <{pemail}>",
        "{role} - final round",
        "Hi Alex,\n\nThanks again for coming in for the final round for the {role} role. "
        "The panel really liked your system design session, and this was a hard call, but "
        "we have decided to offer the position to another candidate who has more hands-on "
        "experience in our domain.\n\nI'm sorry this isn't the news you were hoping for. "
        "Thank you for the time and energy you put into our process.\n\nKind regards,\n"
        "{person}\n{company}\n",
    ),
    Template(
        "recruiter-after-application",
        "{person} <{pemail}>",
        "Your {role} application at {company}",
        "Hello Alex,\n\nThank you for applying for the {role} role at {company} and for your "
        "patience while we reviewed applications. Unfortunately we will not be moving "
        "forward with your application; we received a large number of strong candidates "
        "and have decided to proceed with others whose background is a closer fit.\n\nWe "
        "wish you all the best.\n\n{person}\nRecruiter, {company}\n",
    ),
    Template(
        "ats-with-recruiter-reply-to",
        "{company} Hiring Team <no-reply@ashbyhq.com>",
        "Your interview for {role} at {company}",
        "Hi Alex,\n\nThank you for meeting with us about the {role} position at {company}. "
        "We were impressed by your background, but after discussing it as a team we have "
        "decided not to proceed to the next stage with your candidacy.\n\nWe are grateful "
        "for the time you spent with us and wish you the best of luck.\n\n{person}\n"
        "{company}\n",
        reply_to="{person} <{pemail}>",
    ),
)

CLOSED = (
    Template(
        "position-cancelled",
        "{company} Recruiting <no-reply@smartrecruiters.com>",
        "Update regarding the {role} position",
        "Hello Alex,\n\nWe are writing to let you know that the {role} position you applied "
        "for at {company} has been cancelled due to a change in budget, and we will not be "
        "filling the role this year. This is not a reflection on your application.\n\n"
        "{company}\n",
    ),
)

OTHERS = (
    Template(
        "interview-invitation",
        "{person} <{pemail}>",
        "Interview invitation: {role}",
        "Dear Alex,\n\nWe were impressed by your application for the {role} role at "
        "{company} and would like to invite you to a first interview with our team. Please "
        "use the link below to choose a slot next week.\n\nKind regards,\n{person}\n"
        "{company}\n",
    ),
    Template(
        "acknowledgement",
        "{company} Careers <no-reply@hire.lever.co>",
        "Thanks for applying to {company}",
        "Hi Alex,\n\nThanks for applying for the {role} role. Our team reviews every "
        "application carefully. Due to the volume we receive, we are unfortunately unable to "
        "reply to every applicant individually; if you are not selected for an interview we "
        "will keep your details on file.\n\n{company} Talent Team\n",
    ),
    Template(
        "scheduling",
        "{person} <{pemail}>",
        "Interview scheduling - {role} at {company}",
        "Hi Alex,\n\nThanks for applying to the {role} role at {company}. I'd love to set up "
        "a 45-minute video interview with our hiring manager. Could you share a few times "
        "that work for you next week?\n\nBest,\n{person}\nRecruiter, {company}\n",
    ),
    Template(
        "friend",
        "Jamie Fischer <jamie.fischer@gmail.com>",
        "Dinner on Friday?",
        "Hey Alex,\n\nAre you still up for dinner on Friday? Sam found a new ramen place near "
        "the station, they open at six. Let me know and I'll book a table for four.\n\n"
        "Jamie\n",
    ),
    Template(
        "receipt",
        "Northwind Books <orders@northwindbooks.com>",
        "Your order has shipped",
        "Hello Alex,\n\nGood news: your order #NB-48213 has shipped and should arrive within "
        "three working days. You can follow the parcel with the tracking link in your "
        "account.\n\nThank you for shopping with Northwind Books.\n",
    ),
)

REPLY_BODIES = (
    "Hi Alex,\n\nHappy to share a few thoughts: the panel wanted more depth on the "
    "technical side, and a concrete example of owning a project end to end.\n\n{pfirst}\n",
    "Hi Alex,\n\nThanks for asking. Honestly it was close; the other candidate had worked in "
    "our industry before. Your take-home was one of the best we saw.\n\nBest,\n{pfirst}\n",
    "Hello Alex,\n\nOf course. The main gap was stakeholder management at a larger scale. "
    "I would be glad to keep you in mind for future roles.\n\n{pfirst}\n",
)

AUTO_REPLY_BODY = (
    "Thank you for your message. I am out of the office until Monday with limited access "
    "to email. For urgent matters please contact recruiting@{domain}.\n\n{person}\n"
)


def fields(company: Company, role: str) -> dict[str, str]:
    return {
        "company": company.name,
        "domain": company.domain,
        "person": company.recruiter,
        "pfirst": company.recruiter_first,
        "pemail": company.recruiter_email,
        "role": role,
    }


def compose(
    sender: str,
    to: str,
    subject: str,
    body: str,
    when: datetime,
    *,
    reply_to: str = "",
    in_reply_to: str = "",
    references: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """The mail as bytes (CRLF, as over IMAP) and its Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message_id = make_msgid(domain="sender.example")
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = references or in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), message_id


def fill(
    template: Template, company: Company, role: str, to: str, when: datetime
) -> tuple[bytes, str]:
    values = fields(company, role)
    return compose(
        template.sender.format(**values),
        to,
        template.subject.format(**values),
        template.body.format(**values),
        when,
        reply_to=template.reply_to.format(**values),
    )
