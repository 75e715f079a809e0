"""Extraction as tables: who to answer, which company, which role, from one message."""

from __future__ import annotations

import pytest

from nextround.classifier.extract import (
    choose_reply_to,
    extract_company,
    extract_role,
    is_ats_domain,
    is_automated_address,
    is_human_address,
)
from nextround.classifier.message import Address, Message
from nextround.classifier.text import html_to_text


def address(value: str) -> Address:
    name, _, email = value.rpartition(" <")
    return (
        Address(name=name, email=email.rstrip(">")) if email.endswith(">") else Address("", value)
    )


def message(
    sender: str,
    subject: str = "",
    text: str = "",
    reply_to: tuple[str, ...] = (),
) -> Message:
    return Message(
        message_id="<test@example.org>",
        subject=subject,
        from_=address(sender),
        reply_to=tuple(address(value) for value in reply_to),
        text=text,
    )


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("greenhouse.io", True),
        ("us.greenhouse-mail.io", True),
        ("hire.lever.co", True),
        ("acme.wd5.myworkday.com", True),
        ("SmartRecruiters.com", True),
        ("personio.de", True),
        ("notgreenhouse.io", False),
        ("acme-robotics.com", False),
        ("gmail.com", False),
    ],
)
def test_is_ats_domain(domain: str, expected: bool) -> None:
    assert is_ats_domain(domain) is expected


@pytest.mark.parametrize(
    ("sender", "automated", "human"),
    [
        ("Acme <no-reply@acme.com>", True, False),
        ("donotreply@acme.com", True, False),
        ("Acme Careers <careers-noreply@acme.com>", True, False),
        ("MAILER-DAEMON@mx.acme.com", True, False),
        ("Acme <acme@myworkday.com>", True, False),
        ("Jane Doe <jane.doe@hire.lever.co>", True, False),
        ("Acme Careers <careers@acme.com>", False, False),
        ("jobs.berlin@acme.com", False, False),
        ("Personalabteilung <bewerbung@acme.de>", False, False),
        ("Recursos Humanos <rrhh@acme.es>", False, False),
        ("Acme Talent Team <talent.team@acme.com>", False, False),
        ("Hiring Team <hiringteam@acme.com>", False, False),
        ("Jane Doe <jane.doe@acme.com>", False, True),
        ("Jane from Acme <jane@acme.com>", False, True),
        ("jdoe@acme.com", False, True),
        ("Acme Montessori <director@acmemontessori.org>", False, True),
    ],
)
def test_address_kinds(sender: str, automated: bool, human: bool) -> None:
    assert is_automated_address(address(sender)) is automated
    assert is_human_address(address(sender)) is human


JANE = "Jane Doe <jane.doe@acme.com>"
OLD_CONTACT = Address("Ravi Rao", "ravi.rao@acme.com")
NEWER_CONTACT = Address("Mia Moss", "Mia.Moss@acme.com")


@pytest.mark.parametrize(
    ("mail", "earlier", "expected"),
    [
        # Greenhouse no-reply; the recruiter only signs the text: nobody to answer.
        (
            message(
                "Acme Recruiting <no-reply@us.greenhouse-mail.io>",
                text="Unfortunately ...\n\nBest,\nJane Doe\nRecruiter, Acme",
            ),
            (),
            None,
        ),
        # Lever puts the recruiter in Reply-To.
        (
            message("Acme <no-reply@hire.lever.co>", reply_to=("Jane Doe <Jane.Doe@acme.com>",)),
            (),
            "jane.doe@acme.com",
        ),
        # A team Reply-To does not beat a person in From.
        (message(JANE, reply_to=("Acme Careers <careers@acme.com>",)), (), "jane.doe@acme.com"),
        # The hiring manager writes from her own address.
        (message(JANE), (OLD_CONTACT,), "jane.doe@acme.com"),
        # An agency recruiter is a person too.
        (message("Tom Hale <tom.hale@brightstaffing.co.uk>"), (), "tom.hale@brightstaffing.co.uk"),
        # A shared careers box is nobody in particular.
        (message("Acme Careers <careers@acme.com>"), (), None),
        # Earlier contacts, newest first: the most recent person wins, team boxes are skipped.
        (
            message("Acme <acme@myworkday.com>"),
            (Address("Acme", "jobs@acme.com"), NEWER_CONTACT, OLD_CONTACT),
            "mia.moss@acme.com",
        ),
        (message("Acme <no-reply@ashbyhq.com>"), (Address("", "noreply@acme.com"),), None),
    ],
)
def test_choose_reply_to(mail: Message, earlier: tuple[Address, ...], expected: str | None) -> None:
    assert choose_reply_to(mail, earlier) == expected


@pytest.mark.parametrize(
    ("mail", "company", "role"),
    [
        (
            message(
                "Acme Recruiting <no-reply@us.greenhouse-mail.io>",
                "Your application to Acme Robotics",
                "Hi Sam,\n\nThank you for your interest in Acme Robotics and for taking the time "
                "to apply for the Senior Backend Engineer position. Unfortunately we have "
                "decided to move forward with other candidates.\n\nThe Acme Robotics Talent Team",
            ),
            "Acme Robotics",
            "Senior Backend Engineer",
        ),
        (
            message(
                "Acme <acme@myworkday.com>",
                "Update on your application",
                "Dear Sam,\n\nThank you for applying. We have decided not to proceed.\n",
            ),
            "Acme",
            None,
        ),
        # A hiring manager signing with her company.
        (
            message(
                "Lena Vogt <lena.vogt@bluefinch-analytics.com>",
                "Re: Data Analyst",
                "Hi Sam,\n\nthanks again for talking to us about the Data Analyst role. We went "
                "with another candidate.\n\nLena Vogt\nHead of Data, Bluefinch Analytics",
            ),
            "Bluefinch Analytics",
            "Data Analyst",
        ),
        # An agency recruiter whose client stays unnamed: no company.
        (
            message(
                "Tom Hale <tom.hale@brightstaffing.co.uk>",
                "Office Manager role",
                "Hi Sam,\n\nmy client has decided not to take your application for the "
                "Office Manager role further.\n\nTom Hale\nBright Staffing",
            ),
            None,
            "Office Manager",
        ),
        # A subject naming company and role; freemail never becomes a company.
        (
            message(
                "Ola Berg <ola.berg1987@gmail.com>",
                "Application for Sous Chef at Hotel Fjord",
                "Hi, we filled the position. Good luck! Ola",
            ),
            "Hotel Fjord",
            "Sous Chef",
        ),
        (message("Ola Berg <ola.berg1987@gmail.com>", "Hello", "Thanks, Ola"), None, None),
        # Only the subject names the role.
        (
            message(
                "Tandem Bikes <no-reply@personio.de>",
                "Bike Mechanic - application update",
                "Hi Sam, we decided to go with someone else.\nTandem Bikes",
            ),
            "Tandem Bikes",
            "Bike Mechanic",
        ),
        (
            message(
                "Nordwind Logistik GmbH <no-reply@personio.de>",
                "Ihre Bewerbung",
                "Sehr geehrter Herr Klein,\n\nvielen Dank für Ihr Interesse an der Nordwind "
                "Logistik GmbH und Ihre Bewerbung als Werkstudent Marketing (m/w/d). Leider "
                "müssen wir Ihnen mitteilen, dass wir uns für andere Kandidaten entschieden "
                "haben.\n\nMit freundlichen Grüßen\nIhr Recruiting-Team",
            ),
            "Nordwind Logistik",  # legal forms are dropped, as people write the name
            "Werkstudent Marketing (m/w/d)",
        ),
        (
            message(
                "Recrutement <no-reply@welcometothejungle.com>",
                "Votre candidature",
                "Bonjour Sam,\n\nMerci pour votre candidature au poste de Chef de projet "
                "digital chez Maison Lumière. Malheureusement, nous ne pouvons pas donner "
                "suite.\n\nL'équipe Maison Lumière",
            ),
            "Maison Lumière",
            "Chef de projet digital",
        ),
        (
            message(
                "Talento <no-reply@teamtailor-mail.com>",
                "Tu candidatura",
                "Hola Sam,\n\nGracias por tu interés en Cervezas Norte y por tu candidatura "
                "para el puesto de Analista de Datos. Lamentablemente hemos decidido continuar "
                "con otros perfiles.\n\nEl equipo de Cervezas Norte",
            ),
            "Cervezas Norte",
            "Analista de Datos",
        ),
        (
            message(
                "Werving <noreply@recruitee.com>",
                "Je sollicitatie",
                "Beste Sam,\n\nBedankt voor je sollicitatie voor de functie Junior Accountant "
                "bij Polder Energie. Helaas hebben we voor een andere kandidaat gekozen.\n\n"
                "Met vriendelijke groet,\nPolder Energie",
            ),
            "Polder Energie",
            "Junior Accountant",
        ),
    ],
)
def test_company_and_role(mail: Message, company: str | None, role: str | None) -> None:
    assert extract_company(mail) == company
    assert extract_role(mail) == role


def test_html_only_mail() -> None:
    html = (
        "<html><head><style>p{color:red}</style></head><body><table><tr><td><b>Kestrel "
        "Games</b></td></tr><tr><td><p>Hi Sam,</p><p>Thank you for applying for the "
        "<b>Technical Artist</b> role at Kestrel Games.</p><p>We will not be moving "
        "forward.</p></td></tr></table></body></html>"
    )
    mail = message("Kestrel Games <noreply@ashbyhq.com>", "Your application", html_to_text(html))
    assert extract_company(mail) == "Kestrel Games"
    assert extract_role(mail) == "Technical Artist"
    assert choose_reply_to(mail) is None


@pytest.mark.parametrize("end", ["</br>", "</p>"])
def test_html_mail_with_stray_end_tags_between_sentences(end: str) -> None:
    # Workday writes "</br>" (or a "</p>" with no paragraph open): HTML5 reads them as a
    # line break and an empty paragraph, libxml2 drops them ("InitechAfter").
    html = (
        f'<html><body><div style="font-family:Arial">Dear Ann Smith,{end}{end}Thank you for '
        f"your interest in the Senior Analyst position at Initech{end}After careful "
        f"consideration we have decided to pursue other candidates{end}Kind regards{end}"
        "Initech Talent Team</div></body></html>"
    )
    mail = message("Talent <noreply@myworkday.com>", "Your application", html_to_text(html))
    assert extract_company(mail) == "Initech"
    assert extract_role(mail) == "Senior Analyst"


@pytest.mark.parametrize(
    ("sender", "company"),
    [
        ("Mira Holt <mira@acme-robotics.com>", "Acme Robotics"),  # the domain, last resort
        ("acme@myworkday.com", "Acme"),  # an ATS account without a display name
        ("Acme via Greenhouse <no-reply@greenhouse.io>", "Acme"),
        ("Jane Doe at Acme Robotics <no-reply@hire.lever.co>", "Acme Robotics"),
        ("Careers at Acme Robotics <careers@acmerobotics.com>", "Acme Robotics"),
        ("Recrutement - Maison Lumière <emplois@maisonlumiere.fr>", "Maison Lumière"),
        ("Jane Doe <jane.doe@talent.lever.co>", None),  # a person on an ATS domain
        ("Acme Corp | Careers <acmecorp@acme.com>", "Acme"),  # not "Careers"
        ("Greenhouse <no-reply@greenhouse.io>", None),  # the ATS itself
        ("LinkedIn <jobs-noreply@linkedin.com>", None),
    ],
)
def test_company_from_the_sender_alone(sender: str, company: str | None) -> None:
    mail = message(sender, "Thanks", "Hi Sam, we went another way.")
    assert extract_company(mail) == company


def test_signature_spelling_beats_the_domain() -> None:
    mail = message(
        "Renata Kowalski <renata.kowalski@meridianbank.co.uk>",
        "Your interview",
        "Hi Sam,\n\nwe went with another candidate.\n\nKind regards,\nRenata\nMeridian Bank",
    )
    assert extract_company(mail) == "Meridian Bank"


@pytest.mark.parametrize(
    ("sender", "subject", "text"),
    [
        (
            "Acme <no-reply@greenhouse.io>",
            "Application",
            ("at Acme application for the \n") * 40_000,
        ),
        ("Acme <a@acme.com>", "Acme Robotics " * 80_000, "Acme Robotics " * 80_000),
        ("hr " * 100_000 + "<hr@acme.com>", "x " * 500_000 + "role", ""),
        ("Jane " * 100_000 + "at Acme <jane@acme.com>", "Update", ""),
        ("Acme <a@" + "acme." * 100_000 + "com>", "Update", ""),
    ],
)
def test_megabyte_inputs_return(sender: str, subject: str, text: str) -> None:
    mail = message(sender, subject, text)
    assert len(sender) + len(subject) + len(text) > 500_000
    extract_company(mail)
    extract_role(mail)
    choose_reply_to(mail)


# -- found in review, session 14 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "company"),
    [
        ("Sophie Turner at Harrow Recruitment <sophie.turner@harrowrecruitment.com>", None),
        ("Jane Doe | Acme Careers <jane.doe@acme.com>", "Acme"),
        ("Jane Doe (HR) <jane.doe@acme.com>", "Acme"),
        ("Jane Doe - Talent Acquisition <jane.doe@acme.com>", "Acme"),
        ("Jane Doe, Recruiter <jane.doe@acme.com>", "Acme"),  # a title, not an agency
        ("Jane from Acme Talent <jane@acme.com>", "Acme"),
        # At a free mail provider (a freelance recruiter): a person, and no company.
        ("Jane Doe, Recruiter <jane.doe@gmail.com>", None),
        ("Jane Doe - Talent Acquisition <jane.doe@gmail.com>", None),  # not "Jane Doe"
        ("Anna Schmidt | Recruiting <anna.schmidt@web.de>", None),
    ],
)
def test_a_person_with_a_title_in_the_display_name_is_the_recipient(
    sender: str, company: str | None
) -> None:
    mail = message(sender, "Your application", "Unfortunately we will not move forward.")
    assert is_human_address(address(sender))
    assert choose_reply_to(mail) == address(sender).email
    assert extract_company(mail) == company  # Harrow Recruitment is an agency: its client


@pytest.mark.parametrize(
    "sender",
    [
        "Acme Corp | Careers <acmecorp@acme.com>",  # the company's box, named for it
        "Acme Careers <careers@acme.com>",
        "Jane Doe, Recruiter <recruiting@acme.com>",
        "Jane Doe | Acme Careers <j.d@acme.com>",  # no word of her name in the address
        # Found in the review of the fix: a company's box, named for it, at a subdomain or
        # at a free mail provider.
        "Acme | Careers <acme@careers.acme.com>",
        "Acme, Recruiting <acme@mail.acme.com>",
        "Globex - Talent Acquisition <globex@em.globex.com>",
        "Sunrise Cafe | Careers <sunrisecafe@gmail.com>",
    ],
)
def test_a_title_does_not_make_a_shared_box_a_person(sender: str) -> None:
    assert not is_human_address(address(sender))
    mail = message(sender, "Your application", "Unfortunately we will not move forward.")
    assert choose_reply_to(mail) is None


@pytest.mark.parametrize(
    "sender",
    [
        "Jane Doe, Senior Recruiter <jane.doe@acme.com>",  # gave the company "Senior"
        "Jane Doe | Technical Recruiter <jane.doe@acme.com>",
        "Jane Doe, Head of Talent <jane.doe@acme.com>",
    ],
)
def test_what_is_left_of_a_title_is_no_company(sender: str) -> None:
    mail = message(sender, "Your application", "Unfortunately we will not move forward.")
    assert choose_reply_to(mail) == "jane.doe@acme.com"
    assert extract_company(mail) == "Acme"


@pytest.mark.parametrize(
    ("sender", "subject", "text", "company"),
    [
        (
            "Jane Doe via LinkedIn <messages-noreply@linkedin.com>",
            "Your application",
            "Hi Sam, thanks for applying to Corvid Labs. Unfortunately we went with others.\n",
            "Corvid Labs",
        ),
        (
            "Halden Foods via Greenhouse <no-reply@greenhouse.io>",
            "Your application",
            "Hi Sam, unfortunately we went with others.\n",
            "Halden Foods",
        ),
        (
            "Beacon Health System <beaconhealth@icims.com>",
            "Your application",
            "Dear Sam,\n\nThank you for applying. We will not be moving forward.\n",
            "Beacon Health System",  # an ATS account named for the company, not a person's
        ),
    ],
)
def test_a_name_shown_through_an_ats_or_job_board(
    sender: str, subject: str, text: str, company: str
) -> None:
    assert extract_company(message(sender, subject, text)) == company


@pytest.mark.parametrize(
    "text",
    [
        "Dear Sam,\n\nMy client, Brenner Logistik GmbH, has completed the review. "
        "Unfortunately they will not proceed.\n",
        "Hallo Sam,\n\nmein Kunde, die Brenner Logistik GmbH, hat sich leider gegen Sie "
        "entschieden.\n",
    ],
)
def test_an_agency_names_its_client(text: str) -> None:
    mail = message("Lena Vogt <l.vogt@peak-search.de>", "Your application", text)
    assert extract_company(mail) == "Brenner Logistik"


@pytest.mark.parametrize(
    ("subject", "role"),
    [
        ("Your application", None),
        ("Your Application", None),
        ("Regarding your application", None),
        ("Data Engineer application", "Data Engineer"),
        ("Senior Data Engineer - Your application", "Senior Data Engineer"),
        ("IT Support Engineer application", "IT Support Engineer"),  # "IT" is no pronoun
        ("IT Support Engineer", "IT Support Engineer"),
    ],
)
def test_a_subject_about_your_application_names_no_role(subject: str, role: str | None) -> None:
    mail = message("Acme <jobs@acme.com>", subject, "Unfortunately we will not move forward.")
    assert extract_role(mail) == role
