"""Who to answer, which company and which role: read from one parsed message.

Reply address. A feedback request must reach a person, never a no-reply or shared box, so the
order is: a personal Reply-To (ATS mail often carries the recruiter there), then a personal
From, then the most recent person from earlier mail with the same company (the caller supplies
them), else nobody and the user chooses.

Company. Every source yields weighted candidates, and candidates naming the same company add up,
so sources that agree win:
- the From display name without team words ("Acme Talent Team", "Careers at Acme", "Jane Doe at
  Acme"): the strongest single source, unless it is a person's or a job board's name;
- phrases of the text and subject ("your application to X", "interest in X", "bei X", "chez X",
  "Update from X"): the company writing about itself, spelled as people write it;
- names in the text that spell the sender's domain or ATS account ("Meridian Bank" in the
  signature of meridianbank.co.uk mail, "Acme" for acme@myworkday.com);
- the sender's own domain (acme-robotics.com -> "Acme Robotics"), the last resort.
Agency recruiters write about a client, so their own name is never the hiring company; only a
client the mail names counts. Legal forms (GmbH, Ltd, S.A.) are dropped, as people do.

Role. Phrases that frame a title ("for the X position", "application for X", "Bewerbung als X",
"au poste de X", "el puesto de X", "de functie X"), first in the text, where titles are written
in full, then in the subject ("Application for X at Y", "Acme - X", "X - Application update").
"""

from __future__ import annotations

import functools
import heapq
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence

from nextround.classifier.message import Address, Message
from nextround.classifier.verdict import company_key

ATS_DOMAINS = frozenset(
    "greenhouse.io greenhouse-mail.io lever.co myworkday.com workday.com smartrecruiters.com "
    "icims.com ashbyhq.com taleo.net successfactors.com successfactors.eu sapsf.com sapsf.eu "
    "workable.com workablemail.com jobvite.com personio.de personio.com teamtailor.com "
    "teamtailor-mail.com recruitee.com recruiteemail.com bamboohr.com breezy.hr jazzhr.com "
    "applytojob.com pinpointhq.com softgarden.io softgarden.de join.com welcometothejungle.com "
    "rippling.com gem.com paradox.ai oraclecloud.com avature.net phenompeople.com comeet.co "
    "hibob.com dayforcehcm.com ultipro.com ukg.com paylocity.com paycomonline.net "
    "governmentjobs.com broadbean.com eteach.com harri.com tenstreet.com oleeo.com tal.net "
    "bullhornstaffing.com jobdiva.com clearcompany.com zohorecruit.com freshteam.com homerun.co "
    "jobylon.com factorialhr.com dvinci.de dvinci-hr.com concludis.de rexx-systems.com "
    "rexx-recruitment.com umantis.com csod.com flatchr.io talent-soft.com gupy.com.br "
    "inrecruiting.com taleez.com".split()
)
# Job boards, schedulers, assessment and screening services: they write on a company's behalf
# but are never the hiring company, and nobody there reads a reply.
_PLATFORM_DOMAINS = frozenset(
    "linkedin.com indeed.com glassdoor.com stepstone.de xing.com monster.com ziprecruiter.com "
    "reed.co.uk totaljobs.com cv-library.co.uk adzuna.co.uk jobserve.com wellfound.com "
    "infojobs.net usajobs.gov jobs.nhs.uk charityjob.co.uk civilservicejobs.service.gov.uk "
    "calendly.com google.com zoom.us docusign.net hackerrank.com codility.com codesignal.com "
    "coderbyte.com testgorilla.com shl.com pymetrics.ai criteriacorp.com hoganassessments.com "
    "harver.com alvalabs.io toggl.com hirevue.com modernloop.io goodtime.io checkr.com "
    "hireright.com sterlingcheck.com fadv.com xref.com skillsurvey.com crosschq.com".split()
)
FREEMAIL_DOMAINS = frozenset(
    "gmail.com googlemail.com outlook.com hotmail.com live.com msn.com yahoo.com aol.com "
    "icloud.com me.com proton.me protonmail.com gmx.de gmx.net gmx.at web.de t-online.de "
    "freenet.de posteo.de orange.fr free.fr laposte.net wanadoo.fr hotmail.fr yahoo.fr "
    "libero.it hotmail.es yahoo.es ziggo.nl kpnmail.nl zoho.com fastmail.com hey.com mail.com "
    "yandex.ru".split()
)
_SYSTEM_DOMAINS = ATS_DOMAINS | _PLATFORM_DOMAINS
_SERVICE_DOMAINS = _SYSTEM_DOMAINS | FREEMAIL_DOMAINS

# --- addresses -----------------------------------------------------------------------------

_AUTOMATED_LOCAL_PART = re.compile(
    r"no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply|notifications?|mailer[-_.]?daemon"
    r"|postmaster|bounces?|^auto(?:mated)?$|^system$|^alerts?$|^robot|^scheduling$|calendar"
    r"|ne[-_.]?pas[-_.]?repondre|nicht[-_.]?antworten|no[-_.]?responder|naoresponda"
    r"|notificaciones|niet[-_.]?beantwoorden|^applitrack|^workday|^taleo|^icims"
)
# A shared mailbox: its local part, or its first or last word, is one of these.
_TEAM_MAILBOXES = frozenset(
    "careers career jobs job talent ta recruiting recruitment recruiter hr humanresources "
    "people peopleops hiring info team apply application applications bewerbung bewerbungen "
    "karriere personal personalamt rh recrutement emploi emplois empleo seleccion selezione "
    "rrhh vacatures werken werkenbij werving sollicitaties vacancies hello hallo hola bonjour "
    "contact kontakt office admin enquiries support mail post reception join work stellen "
    "candidates vendors onboarding graduates campus service customer orders billing receipts "
    "members membership alumni newsletter news marketing sales events reply results feedback "
    "sekretariat secretariaat secretariat kanzlei direction direccion direzione becas gf "
    "reclutamiento recrutamento stages stage leitung dotation drh hrm selectie personeel directie "
    "alternance ausbildung employment selection bookings".split()
)
_TEAM_WORDS = (
    r"talent(?:\s+acquisition)?|recruit(?:ing|ment|er)|careers?|jobs|hiring|hr|human\s+resources"
    r"|graduates?|campus|early\s+(?:careers|talent)|internships?|interns|staffing|personnel"
    r"|people(?:\s+(?:&|and)\s+culture)?|teams?|karriere|personal\w*|bewerb\w*|stellenportal"
    r"|geschäftsführung|sekretariat|recrutement|ressources\s+humaines|rh|rrhh|dotation|drh"
    r"|service\s+du\s+personnel|direction(?:\s+g[ée]n[ée]rale|\s+des\s+\w+)?|recursos\s+humanos"
    r"|gesti[óo]n\s+humana|selecci[óo]n|direcci[óo]n|talento|selezione(?:\s+personale)?"
    r"|risorse\s+umane|werving(?:\s+en\s+selectie)?|p&o|personeelszaken|hrm|stagebureau"
    r"|reclutamiento|recrutamento|leitung|scheduling|notifications?|no-?reply"
    r"|lavora\s+con\s+noi|werken\s+bij|trabaja\s+con\s+nosotros"
)
# Words that make a team of a team word: "Graduate Recruitment", "Human Resources Division".
_TEAM_QUALIFIERS = (
    r"office(?:\s+of)?|division|services|department|global|committee|scheme|programme|program"
    r"|university|medical"
)
_TEAM_PHRASE = rf"(?:(?:{_TEAM_QUALIFIERS})\s+)*(?:{_TEAM_WORDS})(?:\s+(?:{_TEAM_QUALIFIERS}))*"
_TEAM_NAME = re.compile(rf"(?<!\w)(?:{_TEAM_WORDS})(?!\w)", re.IGNORECASE)
_TEAM_AFFIXES = re.compile(
    rf"^(?:{_TEAM_PHRASE}\s*)+$|(?:\s+(?:{_TEAM_PHRASE}|via\s+.+))+$"
    rf"|^(?:(?:the|your|ihr|l['\u2019]équipe|el\s+equipo)\s+)?(?:{_TEAM_PHRASE}\s+)+"
    r"(?:(?:at|@|bei|chez|de|van|from|of)\s+)?",
    re.IGNORECASE,
)
_PERSON_NAME = re.compile(
    r"(?:(?:dr|prof|mr|mrs|ms|ing|maître|chef)\.?\s+)?"
    r"[^\W\d_][\w'\u2019\-]*(?:\s+[^\W\d_][\w'\u2019\-.]*){1,3}",
    re.IGNORECASE,
)


def is_ats_domain(domain: str) -> bool:
    """True for an applicant-tracking domain or any subdomain of one (us.greenhouse-mail.io)."""
    return _in_domains(domain, ATS_DOMAINS)


# Senders are few and repeat: the verdict on an address is kept (bounded).
@functools.lru_cache(maxsize=4096)
def is_automated_address(address: Address) -> bool:
    """No-reply, notification and system senders, and anything sent through an ATS or job board."""
    address = _bounded(address)
    return bool(
        _AUTOMATED_LOCAL_PART.search(address.local_part)
        or _in_domains(address.domain, _SYSTEM_DOMAINS)
    )


@functools.lru_cache(maxsize=4096)
def is_human_address(address: Address) -> bool:
    """A person's own mailbox: not automated, not a shared box, not signed as a team."""
    address = _bounded(address)
    if is_automated_address(address) or _is_team_mailbox(address.local_part):
        return False
    name = " ".join(address.name.split())
    if not name or _looks_like_person(name, address) or not _TEAM_NAME.search(name):
        return True
    # "Jane Doe | Acme Careers", "Jane Doe, Recruiter": a person, if the address is hers.
    return _titled_person(name, address) is not None


def human_writers(message: Message, own_email: str) -> list[Address]:
    """The people who wrote a mail (its sender and reply-to addresses), the user aside."""
    return [
        address
        for address in (message.from_, *message.reply_to)
        if address and address.email != own_email and is_human_address(address)
    ]


_SECOND_LEVEL = {"co", "com", "ac", "org", "net", "gov", "or", "ne", "edu"}


def domain_key(address: Address) -> str:
    """The company a domain names (brightloom.io, mail.brightloom.co.uk -> "brightloom"), or
    "" for an applicant-tracking system or a free mail provider."""
    return _domain_key(address.domain)


@functools.lru_cache(maxsize=4096)
def _domain_key(domain: str) -> str:
    if is_ats_domain(domain) or domain in FREEMAIL_DOMAINS:
        return ""
    labels = domain.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return company_key(labels[-3])
    return company_key(labels[-2]) if len(labels) >= 2 else ""


def choose_reply_to(message: Message, earlier_contacts: Sequence[Address] = ()) -> str | None:
    """Where a feedback request should go, lower-cased; None when no person is known.

    `earlier_contacts` are people from earlier mail with the same company, newest first (as
    `Store.earlier_contacts` returns them and `Message.thread_ids` orders threads).
    """
    senders = [*message.reply_to, *([message.from_] if message.from_ else [])]
    for address in [*senders, *earlier_contacts]:
        if is_human_address(address):
            return address.email.strip().lower()
    return None


def _bounded(address: Address) -> Address:
    """The address cut to what real mail allows (hostile headers stay cheap to read)."""
    return Address(address.name[:_NAME_LIMIT], address.email[-_EMAIL_LIMIT:])


def _in_domains(domain: str, domains: frozenset[str]) -> bool:
    labels = domain[-_EMAIL_LIMIT:].strip().lower().rstrip(".").split(".")
    return any(".".join(labels[index:]) in domains for index in range(len(labels) - 1))


def _is_team_mailbox(local_part: str) -> bool:
    words = [word for word in re.split(r"[._+\-\d]+", local_part.lower()) if word]
    return not words or any(word in _TEAM_MAILBOXES for word in (local_part, words[0], words[-1]))


# A person's name, then their title or team ("Jane Doe, Recruiter", "Jane Doe (HR)", "Jane
# Doe - Talent Acquisition", "Jane Doe | Acme Careers", "Jane from Acme Talent").
_PERSON_AND_TITLE = re.compile(
    r"^(?P<person>[^|@(),\u2013\u2014]+?)(?:\s+(?:at|from|@|bei|chez)\s+|\s*[|,]\s*"
    r"|\s+[-\u2013\u2014]\s+|\s*\(\s*)(?P<rest>[^()]+?)\s*\)?$"
)


def _titled_person(name: str, address: Address) -> tuple[str, str, bool] | None:
    """(person, title, whether the title may name a company) for a display name that is a
    person's followed by a title or team; None for any other name."""
    match = _PERSON_AND_TITLE.match(name)
    if match is None or not _TEAM_NAME.search(match.group("rest")):
        return None
    person = match.group("person")
    if not (_looks_like_person(person, address) and _shares_a_word(person, address)):
        return None  # "Kantonsspital Seeland - HR" <noreply@...>: a company's team
    separator = name[match.end("person") : match.start("rest")].strip().lower()
    return person, match.group("rest"), separator in ("at", "from", "@", "bei", "chez", "|")


# A subject's words before "application" that make no title: "Your application".
_NOT_A_TITLE = frozenset("your our my their the this regarding concerning about re".split())
# What is left of a title once its team word is taken off: never a company.
_TITLE_WORDS = frozenset(
    "senior junior lead head principal chief staff associate assistant technical global "
    "regional internal external executive manager director partner specialist coordinator "
    "consultant advisor adviser officer generalist sourcer of for and the vp svp evp".split()
)


def _shares_a_word(name: str, address: Address) -> bool:
    """Whether the address's local part holds a word of `name` that its domain does not:
    jane.doe@acme.com for "Jane Doe", not acmecorp@acme.com or acme@careers.acme.com for
    "Acme Corp". At a free mail provider, where a small company's box is named for it as a
    person's is for them, a word on its own: jane.doe@gmail.com, not sunrisecafe@gmail.com."""
    local, domain = _fold(address.local_part), _squash(address.domain)
    words = [_fold(word) for word in re.findall(r"[^\W\d_]{3,}", name)]
    if address.domain.lower() in FREEMAIL_DOMAINS:  # each word apart: jane.doe, not janedoe
        local_words = set(re.split(r"[._+\-\d]+", local))
        return any(word in local_words for word in words)
    return any(word in local for word in words) and not any(word in domain for word in words)


def _looks_like_person(name: str, address: Address) -> bool:
    """A person's display name: no team words, and it shares a word with the local part, or
    it is two to four capitalised words that do not spell the domain."""
    if _TEAM_NAME.search(name) or "&" in name:
        return False
    words = [_fold(word) for word in re.findall(r"[^\W\d_]{2,}", name)]
    if any(len(word) >= 3 and word in _fold(address.local_part) for word in words):
        return True
    domain = _squash(address.domain.split(".")[0])
    if any(len(word) >= 4 and word in domain for word in words):
        return False
    return bool(_PERSON_NAME.fullmatch(name))


# --- company -------------------------------------------------------------------------------

# Agencies say so in their domain or display name, or write about "my client".
_AGENCY_SENDER = re.compile(
    r"staffing|recruit(?!ing\b|ment\b)|resourcing|search|headhunt|uitzend|int[ée]rim|temps\b"
    r"|personalberatung|-personal\b|talent(?:os|o|s)?(?:hunters|bridge|brug|bruecke|hunt|consult|\.)"
    r"|exec\.",
    re.IGNORECASE,
)
_CLIENT_MENTION = re.compile(
    r"\b(?:my|our|the)\s+(?-i:client)\b(?![-\s]+(?:service|success|facing|relation))|\bagencies\b"
    r"|\bmein(?:e[mn]?)?\s+Kunden?\b|\b(?:mon|notre)\s+client\b|\bentreprise\s+cliente\b"
    r"|\b(?:mi|nuestro|nostro|o)\s+cliente\b|\b(?:mijn|onze|de)\s+opdrachtgever\b",
    re.IGNORECASE,
)
# A company's name starts right after one of these; `_leading_name` reads it.
_COMPANY_PHRASES = re.compile(
    r"\b(?:applica(?:tion|ying)|appl(?:ying|ied)|interest(?:ed)?)\s+(?:to|with|at|in)\s+"
    r"(?:joining\s+)?|\b(?:position|role|job|opportunity|vacancy|opening|post|career|roles|update"
    r"|news)\s+(?:at|with|from)\s+|\b(?:on\s+behalf\s+of|everyone\s+at|(?:all\s+of\s+)?us\s+"
    r"(?:here\s+)?at|here\s+at|join(?:ing)?|work(?:ing)?\s+(?:at|for|with)|(?:my|our|the)\s+client,?"
    r"|sent\s+to)\s+|\b(?:mein(?:e[mn]?)?\s+Kunden?|(?:mon|notre)\s+client|(?:mi|nuestro)\s+cliente)"
    r",?\s+(?:(?:die|der|das|la|el)\s+)?|\b(?:Interesse\s+an|Bewerbung\s+bei)\s+(?:der\s+|dem\s+|die\s+|einer\s+)?"
    r"|\bint[ée]r[êe]t\s+(?:pour|envers)\s+|\bcandidature\s+chez\s+|\brejoindre\s+"
    r"|\binter[ée]s\s+(?:en|por)\s+|\bunirte\s+a\s+|\bcandidatura\s+(?:en|a|para)\s+"
    r"|\b(?:sollicitatie|interesse)\s+(?:bij|in)\s+|\bparte\s+d[oa]\s+|\binteresse\s+per\s+",
    re.IGNORECASE,
)
_WEAK_COMPANY_PHRASES = re.compile(
    r"\b(?:at|bei|chez|en|bij|presso|na|no)\s+(?=\S)|\b(?:l['\u2019]équipe|el\s+equipo\s+de"
    r"|het\s+team\s+van|il\s+team\s+di|a\s+equipe)\s+",
    re.IGNORECASE,
)
_PERSON_AT_COMPANY = re.compile(
    r"^(?P<person>[^|@()]+?)\s+(?:at|from|@|bei|chez|\||\()\s+(?P<company>[^()]+)\)?$"
)
_SEPARATOR = re.compile(r"\s+[-\u2013\u2014|/]\s+|:\s+|,\s+")
_LEGAL_FORM = re.compile(
    r"[,\s]+(?:gmbh(?:\s*&\s*co\.?(?:\s*kg)?)?|ag|inc\.?|ltd\.?|limited|llc|llp|plc|b\.?v\.?"
    r"|n\.?v\.?|s\.a\.?(?:s\.?)?|sa|sas|s\.l\.?|sarl|s\.r\.l\.?|srl|s\.p\.a\.?|spa|e\.v\.?|kg"
    r"|ltda\.?|corp\.?)$",
    re.IGNORECASE,
)
_CONNECTORS = frozenset(
    "of de la le du des der für van von di del da do am an y et und and & e".split()
)
_CONJUNCTIONS = frozenset("y et und and & e".split())
_ABBREVIATIONS = frozenset("st. ste. gebr. dr. s.a. b.v. n.v. e.v.".split())
# Pronouns and articles: never a name, and never inside a title.
_FUNCTION_WORDS = frozenset(
    "the a an we our you your us i it this that these uns ihnen sie ihr ihre ihrer ihrem unserem "
    "unserer unseren unsere einer einem eines vous nous notre votre nos nuestro nuestra su sus "
    "usted ons uw onze jullie je lei noi voi la le el los las het een il lo gli les mi mis mio "
    "mia ti te tu".split()
)
# How much each source counts. In agency mail only phrases and subject segments count: the
# weak phrases name towns, and the sender's own name is the agency's.
_SOURCE_WEIGHTS = {
    "display": 3.0,
    "phrase": 2.0,
    "mention": 1.5,
    "weak": 1.0,
    "segment": 1.0,
    "account": 0.75,
    "domain": 0.5,
}
_WORD = re.compile(r"\S+")
_DASHES = "-\u2013\u2014"
_QUOTES = "\"'\u2018\u2019\u201c\u201d\u00ab\u00bb"
# Characters read: where any real mail names company and role (a rejection and its signature
# fit many times over; further down is quoted history). Reading more costs, line by line.
_HEAD, _SUBJECT_LIMIT, _NAME_LIMIT, _EMAIL_LIMIT = 6_000, 1_000, 200, 320
_SPAN = 120
Reader = Callable[[], str | None]


def extract_company(message: Message) -> str | None:
    """The hiring company's name as the mail writes it, or None when it does not say."""
    return extract(message)[0]


def extract(message: Message) -> tuple[str | None, str | None]:
    """The company and the role (`extract_company`, `extract_role`): the company needs the
    role, so this finds it once for both."""
    role = extract_role(message)
    return _company(message, role), role


def _company(message: Message, role: str | None) -> str | None:
    text, sender = message.text[:_HEAD], message.from_ and _bounded(message.from_)
    subject = _REPLY_PREFIX.sub("", message.subject[:_SUBJECT_LIMIT])
    role_key = _key(role or "")  # "Acme - Data Analyst": one is the role
    candidates = [
        candidate
        for candidate in [*_phrase_candidates(text, "weak"), *_subject_candidates(subject)]
        if _key(candidate[0]) != role_key
    ]
    if sender is None:
        return _best_candidate(candidates, [])
    anchors = _sender_anchors(sender)
    mentions = list(_anchored_mentions(text, anchors))
    if _is_agency(sender, text) or any(_AGENCY_SENDER.search(name) for name, _ in mentions):
        own = [*anchors, _key(sender.name)]
        clients = [(name, source) for name, source in candidates if source in ("phrase", "segment")]
        return _best_candidate([item for item in clients if not _related(_key(item[0]), own)], [])
    return _best_candidate([*candidates, *_sender_candidates(sender), *mentions], anchors)


def _is_agency(sender: Address, text: str) -> bool:
    """Agency mail. "Acme Recruiting" in a display name is a company's team, but a domain
    with "recruit" in it (rootsrecruiting.com) is an agency's own."""
    own_domain = not _in_domains(sender.domain, _SYSTEM_DOMAINS)
    agency_domain = "recruit" in sender.domain or _AGENCY_SENDER.search(sender.domain)
    titled = _titled_person(" ".join(sender.name.split()), sender)
    # "Jane Doe, Recruiter" is her title; "Jane Doe at Peak Recruiters" names an agency.
    name = _TEAM_AFFIXES.sub("", titled[1]) if titled else sender.name
    return bool(
        (own_domain and agency_domain)
        or _AGENCY_SENDER.search(name)
        or _CLIENT_MENTION.search(text)
    )


def _phrase_candidates(source: str, weak_source: str) -> Iterator[tuple[str, str]]:
    """(name, source) pairs for names the text or subject introduces with a phrase."""
    for pattern, kind in ((_COMPANY_PHRASES, "phrase"), (_WEAK_COMPANY_PHRASES, weak_source)):
        for match in pattern.finditer(source):
            name = _leading_name(source[match.end() : match.end() + _SPAN])
            if name:
                yield name, kind


def _subject_candidates(subject: str) -> Iterator[tuple[str, str]]:
    """Names the subject introduces ("Update from Acme") or sets apart ("Acme - Analyst")."""
    yield from _phrase_candidates(subject, "phrase")
    segments = _SEPARATOR.split(subject)
    for segment in segments if len(segments) > 1 else ():
        name = _leading_name(segment)
        if name and name == segment.strip() and not _APPLICATION_WORD.search(name):
            yield name, "segment"


def _sender_candidates(sender: Address) -> Iterator[tuple[str, str]]:
    name = _display_company(sender)
    if name:
        yield name, "display"
    account = sender.local_part  # acme@myworkday.com; not jane.doe.9e3b1@, talent@
    if is_ats_domain(sender.domain) and re.fullmatch(r"[a-z]+(?:-[a-z]+)*", account):
        if not _AUTOMATED_LOCAL_PART.search(account) and not _is_team_mailbox(account):
            yield account.replace("-", " ").title(), "account"
    elif not _in_domains(sender.domain, _SERVICE_DOMAINS):
        yield _domain_name(sender.domain), "domain"


def _display_company(sender: Address) -> str | None:
    """The company a From display name names: "Acme via Greenhouse", "Jane Doe at Acme",
    "Jane Doe | Acme Careers", "Recrutement - Acme", "Acme Talent Team"; None for a person's
    name ("Jane Doe, Recruiter") or a job board's, or a person's through one ("Jane Doe via
    LinkedIn")."""
    if _in_domains(sender.domain, _PLATFORM_DOMAINS):
        return None
    name = " ".join(sender.name.replace('"', " ").split())
    name = re.split(r"\s+via\s+", name, maxsplit=1, flags=re.IGNORECASE)[0]
    titled = _titled_person(name, sender)
    if titled is not None:
        # "Jane Doe | Acme Careers", "Jane at Acme Talent" name a company; "Jane Doe, Senior
        # Recruiter" or "Jane Doe | Head of Talent" a title, and what is left of it none.
        company = _TEAM_AFFIXES.sub("", titled[1]).strip()
        words = [_fold(word) for word in re.findall(r"[^\W\d_]+", company)]
        if not words or all(word in _TITLE_WORDS for word in words):
            return None
        return company if titled[2] and not _TEAM_NAME.search(company) else None
    person = _PERSON_AT_COMPANY.match(name)
    if person and _looks_like_person(person.group("person"), sender):
        return _TEAM_AFFIXES.sub("", person.group("company")).strip() or None  # not "Careers"
    platform = _squash(_domain_name(sender.domain))
    if not name or (is_ats_domain(sender.domain) and _related(_key(name), [platform])):
        return None  # the ATS's own name: "Gupy", "Ashby Hiring"
    folded_words = re.findall(r"[^\W\d_]{2,}", _fold(name))
    in_address = [word for word in folded_words if word in _fold(sender.local_part)]
    # An ATS account named for the company spells its name in one word: beaconhealth@icims.
    account = is_ats_domain(sender.domain) and sender.local_part.isalpha()
    personal = _looks_like_person(name, sender) and not is_automated_address(sender)
    if not _TEAM_NAME.search(name) and ((len(in_address) >= 2 and not account) or personal):
        return None
    parts = [part for part in _SEPARATOR.split(name) if part.strip()]
    plain = [part for part in parts if not _TEAM_NAME.search(part)]
    company = (plain or parts)[0] if len(parts) > 1 else name
    return _TEAM_AFFIXES.sub("", company).strip() or None


def _anchored_mentions(text: str, anchors: list[str]) -> Iterator[tuple[str, str]]:
    """Names in the text that spell the sender's domain or ATS account."""
    # A name spelled by an anchor holds its first four letters (see _spelled_by): a line
    # without them for any anchor has no such name, and most lines have none.
    starts = [anchor[:4] for anchor in anchors if len(anchor) >= 4]
    whole = _squash(text)
    if not any(start in whole for start in starts):
        return
    for line in text.splitlines():
        squashed = _squash(line)
        if not any(start in squashed for start in starts):
            continue
        words = _WORD.findall(line)
        for start, word in enumerate(words[:40]):
            if word[:1].isupper():
                name = _leading_name(" ".join(words[start : start + 7]))
                if name and _spelled_by(_key(name), anchors):
                    yield name, "mention"


def _sender_anchors(sender: Address) -> list[str]:
    """Squashed names the sender's address spells: its domain's, or its ATS account's."""
    if not _in_domains(sender.domain, _SERVICE_DOMAINS):
        anchor = _squash(_domain_name(sender.domain))
    elif is_ats_domain(sender.domain) and not _AUTOMATED_LOCAL_PART.search(sender.local_part):
        anchor = _squash(sender.local_part)
    else:
        return []
    return [anchor] if len(anchor) >= 3 else []


def _spelled_by(key: str, anchors: Iterable[str]) -> bool:
    """Whether a squashed name is spelled by a squashed domain or account name."""
    for anchor in anchors:
        shared = _shared_prefix(key, anchor)
        if shared >= 4 and shared >= 0.75 * len(anchor) and shared >= 0.45 * len(key):
            return True
        if len(anchor) >= 5 and anchor in key and len(anchor) >= 0.45 * len(key):
            return True  # "gemeenteoosterwolde" spelled by oosterwolde.nl
    return False


def _related(key: str, others: Iterable[str]) -> bool:
    """Whether squashed names start alike: "cartwright" and "cartwrightrecruit"."""
    for other in others:
        shared = _shared_prefix(key, other)
        if shared >= 4 and shared >= 0.5 * min(len(key), len(other)):
            return True
    return False


def _shared_prefix(first: str, second: str) -> int:
    """How many leading characters two strings share."""
    pairs = zip(first, second, strict=False)
    return next(
        (index for index, (a, b) in enumerate(pairs) if a != b), min(len(first), len(second))
    )


def _domain_name(domain: str) -> str:
    labels = [label for label in domain.lower().split(".") if label != "example"]
    # The registered name sits before the public suffix: acme.co.uk, acme-robotics.com.
    index = -3 if len(labels) >= 3 and len(labels[-2]) <= 3 and len(labels[-1]) == 2 else -2
    registered = labels[max(index, -len(labels))]
    return " ".join(part.capitalize() for part in registered.split("-"))


def _best_candidate(candidates: list[tuple[str, str]], anchors: list[str]) -> str | None:
    """The company whose names weigh most ("Acme" counts for "Acme Robotics"), spelled as its
    strongest source spells it."""
    scores: dict[str, float] = {}
    strongest: dict[str, tuple[float, str]] = {}
    for name, source in candidates:
        key, weight = _key(name), _SOURCE_WEIGHTS[source]
        if len(key) < 2 or _fold(name.split()[-1]) in _JOB_NOUNS:
            continue
        scores[key] = scores.get(key, 0.0) + weight + (1.0 if _spelled_by(key, anchors) else 0.0)
        if weight > strongest.get(key, (0.0, ""))[0]:
            strongest[key] = (weight, _LEGAL_FORM.sub("", name.strip()))
    if not scores:
        return None
    best = max(scores, key=lambda key: sum(scores[other] for other in _cluster(key, scores)))
    cluster = _cluster(best, scores)
    spelling = max(cluster, key=lambda key: (strongest[key][0], scores[key], key))
    # A fuller name the mail gives at least as much weight wins: "Acme" -> "Acme Robotics".
    fuller = [key for key in cluster if key.startswith(spelling) and scores[key] > scores[spelling]]
    return strongest[max(fuller or [spelling], key=lambda key: (scores[key], key))][1]


def _cluster(key: str, keys: Iterable[str]) -> list[str]:
    """Keys naming the same company as `key`: "acme", "acmerobotics", "gemeenteacme"."""
    return [other for other in keys if _same_company(key, other)]


def _same_company(key: str, other: str) -> bool:
    if key.startswith(other) or other.startswith(key):
        return True
    return min(len(key), len(other)) >= 5 and (key in other or other in key)


def _leading_name(span: str) -> str | None:
    """The capitalised words a span starts with: "Acme Robotics! We..." -> "Acme Robotics"."""
    line = span.split("\n", 1)[0]
    first = line.lstrip().lstrip(_QUOTES + "()[]")[:1]
    if not (first.isupper() or first == "&"):
        return None  # what the loop below decides on the first word, without splitting all
    words: list[str] = []
    tokens = _WORD.findall(line)[:10]
    for index, token in enumerate(tokens):
        word = token.strip(_QUOTES + "()[]")
        core, lower = word.rstrip(",;:!?"), word.rstrip(",;:!?").lower()
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if not core or not (core[0].isupper() or core == "&" or (lower in _CONNECTORS and words)):
            break
        if lower in _CONJUNCTIONS and (
            not following[:1].isupper() or _fold(following) in _FUNCTION_WORDS
        ):
            break
        if not words and lower in _FUNCTION_WORDS:
            return None
        sentence_end = core.endswith(".") and lower not in _ABBREVIATIONS and len(core) > 2
        words.append(core[:-1] if sentence_end else core)
        if core != word or sentence_end or len(words) > 6:
            break
    name = _TEAM_AFFIXES.sub("", " ".join(_strip_connectors(words)))
    name = " ".join(_strip_connectors(name.split()))
    return name if name and _fold(name) not in _FUNCTION_WORDS else None


def _strip_connectors(words: list[str]) -> list[str]:
    while words and (words[-1].lower() in _CONNECTORS or words[-1] in (*_DASHES, "/")):
        words = words[:-1]
    return words


def _fold(value: str) -> str:
    if value.isascii():  # most text: the same answer without decomposing it
        return value.lower()
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


_NOT_SQUASHED = re.compile(r"[^a-z0-9]+")


def _squash(value: str) -> str:
    value = value.replace("&", "and")
    if value.isascii():
        return _NOT_SQUASHED.sub("", value.lower())
    # _fold, but whatever is not ASCII after decomposing goes anyway, combining or not.
    folded = unicodedata.normalize("NFKD", value.casefold()).encode("ascii", "ignore")
    return _NOT_SQUASHED.sub("", folded.decode())


def _key(name: str) -> str:
    return _squash(_LEGAL_FORM.sub("", name.strip()))


# --- role ----------------------------------------------------------------------------------

# A title follows each of these frames. English and German titles are capitalised; Romance
# and Dutch mails often write them in lower case.
_CAPITALISED_FRAMES = re.compile(
    r"\b(?:position|role|post|vacancy)\s+(?:of|as)\s+(?:an?\s+)?"
    r"|\bappl(?:ication|ied|ying)\s+(?:for|as)\s+(?:the\s+|our\s+|an?\s+)?"
    r"|\bappl(?:ication|ied|ying)\s+to\s+be\s+(?:an?\s+|our\s+|\S+['\u2019]s\s+)?"
    r"|\binterview(?:ing|ed|s)?(?:\s+loop)?\s+for\s+(?:the\s+)?|\bcandidate\s+for\s+(?:the\s+)?"
    r"|\bhir(?:e|ing)\s+(?:an?|the)\s+|\brecruitment\s+for\s+(?:the\s+|an?\s+)?"
    r"|\bjoin(?:ing)?\s+[^\n.,]{1,60}?\s+as\s+(?:an?\s+)?"
    r"|\binterest\s+in\s+(?:the\s+)?(?=[^\n.]{2,60}?\s+(?:at|with)\s+[A-Z])"
    r"|\b(?:Bewerbung|Stelle|Rolle|Position|Einstieg|Tätigkeit|Ausbildungsplatz|Suche)\s+(?:(?:um"
    r"|auf|für)\s+(?:die|den|eine?n?)\s+(?:Stelle|Position)\s+)?(?:als|einer|eines|für\s+den)\s+"
    r"|\b(?:die|der|zur)\s+(?:Position|Stelle|Rolle)\s+(?:als\s+)?",
    re.IGNORECASE,
)
_LOWER_CASE_FRAMES = re.compile(
    r"\b(?:poste|mission|fonction|stage)\s+(?:de\s+|d['\u2019]\s*)"
    r"|\b(?:puesto|posici[óo]n|cargo|plaza|proceso|oferta|búsqueda|postulaci[óo]n)\s+(?:de|a)\s+"
    r"|\bvacante\s+(?:de\s+)?|\bpostularte\s+a\s+(?:la\s+búsqueda\s+de\s+)?"
    r"|\b(?:posizione|ruolo|candidat[oa]|candidatura)\s+(?:di|come|per)\s+"
    r"|\b(?:vaga|fun[çc][ãa]o|posi[çc][ãa]o)\s+(?:de\s+)?|\bprocesso\s+para\s+"
    r"|\b(?:functie|vacature|rol|kandidatuur|sollicitatie|positie)\s+(?:(?:voor|naar|op)\s+"
    r"(?:de\s+)?(?:functie\s+|vacature\s+)?)?(?:van\s+|als\s+|voor\s+)?",
    re.IGNORECASE,
)
# "the Data Engineer role": the title is read backwards from the noun, up to the clause start.
_ROLE_NOUN = r"(?:position|role|job|vacancy|post|opening|opportunity|search)"
_NOUN_FRAME = re.compile(rf"\s{_ROLE_NOUN}\b")
_SUBJECT_NOUN = re.compile(rf"^(?P<title>.+?)\s+(?:{_ROLE_NOUN}|interview|application)$", re.I)
_CLAUSE_END = re.compile(r"[\n.!?;:]")
_TITLE_TOKEN = re.compile(r"\([^()\n]{0,40}\)\S*|\S+")
_ROLE_SEPARATOR = re.compile(r"\s+[-\u2013\u2014|]\s+|:\s+")
_REPLY_PREFIX = re.compile(r"^(?:\s*(?:re|aw|fw|fwd|wg|tr|rv|sv)\s*:\s*)+", re.IGNORECASE)
# Words of a subject that are about the application, not the role or the company.
_APPLICATION_WORD = re.compile(
    r"applica|bewerbung|candidat|sollicitatie|kandidatuur|postula|interview|entretien|entrevista"
    r"|colloquio|gesprek|gespräch|vacan|vacature|stelle|recrutement|recrutamento|selecci|update"
    r"|status|absage|rückmeldung|feedback|proceso|processo|procedure|hearing|assessment|mandat"
    r"|\bmission\b|opdracht|\bsearch\b|búsqueda|terugkoppeling|retour|seguimiento|mitteilung"
    r"|ergebnis|résultat|resultado|esito|uitslag|decisi|outcome|\bresults?\b|\boffer\b|oferta"
    r"|offre|cancel|annul",
    re.IGNORECASE,
)
_TITLE_STOPS = frozenset(
    "at with in on for to from is was has have had we you which that who whom where based "
    "within bei im am an auf zu mit ab ist wurde haben hat sind sie wir ihr ihre ihnen kein "
    "keine nicht gesteckt beworben à a au aux chez dans avec pour par que qui sur basé basée "
    "située est vient al con para por zona ha queda presso nel nella per è na no em com aqui foi "
    "bij voor op te met aan is toe ingevuld heeft hebben wordt vervallen geannuleerd ingetrokken "
    "suspendue suspendu annulé annulée supprimé pourvu cancelled canceled closed filled pausiert "
    "storniert besetzt cancelado cancelada cerrado congelado congelada hasta desde auquel "
    "laquelle lequel dont".split()
)
_TITLE_BREAKS = _TITLE_STOPS | _FUNCTION_WORDS
# A title never starts with one of these (another frame, an article) ...
_NOT_TITLE_STARTS = frozenset(
    "selección seleccion selection sélection recrutement recruitment recrutamento candidature "
    "candidatura application bewerbung sollicitatie interview entretien entrevista vacature "
    "position role job vacancy post opening opportunity posizione poste puesto vacante functie "
    "stelle rol ruolo cargo vaga função plaza mission empleo trabajo emploi die der das den dem "
    "des für um auf bei vom von zum zur mit ein eine the a an".split()
)
# ... nor is one of these on its own.
_NOT_TITLES = frozenset(
    "same right open current above following new other advertised vacant relevant whole great "
    "good perfect similar search process cv center centre monday tuesday wednesday thursday "
    "friday saturday sunday".split()
)
_JOB_NOUNS = frozenset(
    "manager engineer developer specialist clerk lead officer analyst assistant director designer "
    "nurse technician consultant coordinator administrator representative associate intern "
    "scientist accountant advisor adviser supervisor executive operator driver teacher chef cook "
    "controller planner researcher architect programmer mechanic electrician estimator counsel "
    "lawyer solicitor paralegal florist receptionist artist writer editor lecturer professor "
    "fellow worker trader maintainer secretary tester agent producer curator librarian owner "
    "pharmacist therapist hygienist surveyor inspector buyer strategist recruiter apprentice "
    "trainee barista bartender cashier cleaner guard roaster hand partner guide operative "
    "internship fellowship scheme programme placement".split()
)
# Endings of job nouns in the languages served: Entwickler, ingénieure, fisioterapeuta, ...
_JOB_ENDINGS = tuple(
    "er or ist ista eur euse rice ien ienne iste ero era ora ente ant ent leitung kraft arzt "
    "ärztin in ige loge oog ke eta ate te ur".split()
)
_AS = re.compile(r"^(?:als|as|comme|como|come)\s+", re.IGNORECASE)
_REFERENCE = re.compile(
    r"\b(?:ref|req|requisition|job\s*id|id|posting|vacature|vacaturenummer|kennziffer|offre|réf"
    r"|n°|uur|hours|stunden)\b|\d{3,}|#|[A-Z]{1,4}-\d",
    re.IGNORECASE,
)
_REFERENCE_GROUP = re.compile(
    r"\s*[(\[][^)\]]*(?:\d{3,}|ref|req|id\b)[^)\]]*[)\]]|\s+\d{4}$"
    r"|^(?:requisition|vacancy|posting)\s+\S*\d\S*\s+",
    re.IGNORECASE,
)
_LEADING_ARTICLE = re.compile(
    r"^(?:(?:the|a|an|le|la|un|une|el|una|der|die|das|einer?|eines|een|de|het|il|lo|o)\s+"
    r"|l['\u2019]|d['\u2019])",
    re.IGNORECASE,
)


def extract_role(message: Message) -> str | None:
    """The job title the mail is about, or None when it names none."""
    from_text = next(_framed_titles(message.text[:_HEAD]), None)
    subject = _REPLY_PREFIX.sub("", message.subject[:_SUBJECT_LIMIT])
    segments = [segment for segment in _ROLE_SEPARATOR.split(subject) if segment.strip()]
    framed = (title for segment in segments for title in _framed_titles(segment))
    from_subject = next(framed, None) or _subject_title(segments)
    if not from_text or not from_subject:
        return from_text or from_subject
    text, subject_title = from_text.casefold(), from_subject.casefold()
    if subject_title.endswith(text):  # "Team Lead" above "Customer Support Team Lead"
        extra = from_subject[: -len(from_text)]
        return from_text if _APPLICATION_WORD.search(extra) else from_subject
    if subject_title.startswith(text) and len(subject_title) - len(text) <= 25:
        return from_subject  # "QA Tester" above "QA Tester (m/w/d)"
    return from_text


def _framed_titles(source: str) -> Iterator[str]:
    """Titles framed by a phrase, in the order the source writes them. Read lazily: the
    caller mostly wants the first, and reading a title costs more than finding its frame."""

    def after(frames: re.Pattern[str], capitalised: bool) -> Iterator[tuple[int, Reader]]:
        for match in frames.finditer(source):
            span = source[match.end() : match.end() + _SPAN]
            yield match.start(), functools.partial(_read_title, span, capitalised)

    def before() -> Iterator[tuple[int, Reader]]:
        for match in _NOUN_FRAME.finditer(source):
            clause = _CLAUSE_END.split(source[max(0, match.start() - 90) : match.start()])[-1]
            yield match.start(), functools.partial(_read_title_backwards, clause)

    # Each finds its frames in order; merged by position, ties in this order (merge is stable).
    frames = (after(_CAPITALISED_FRAMES, True), after(_LOWER_CASE_FRAMES, False), before())
    for _, read in heapq.merge(*frames, key=lambda item: item[0]):
        title = read()
        if title:
            yield title


def _subject_title(segments: list[str]) -> str | None:
    """A subject segment that is a title: "Bewerbung X", "X - Application update", "Acme - X",
    "X role"."""
    for segment in segments:
        words = segment.split()
        lead = [index for index, word in enumerate(words[:3]) if _APPLICATION_WORD.search(word)]
        if lead and len(words) > lead[-1] + 1:
            rest = _AS.sub("", " ".join(words[lead[-1] + 1 :]))
            title = _read_title(rest, capitalised=False, whole=True)
            if title and _looks_like_job(title) and not _APPLICATION_WORD.search(title):
                return title
    for index, segment in enumerate(segments):
        if _APPLICATION_WORD.search(segment) and len(segments) > 1:
            neighbour = segments[index + 1] if index + 1 < len(segments) else segments[index - 1]
            if not _APPLICATION_WORD.search(neighbour):
                return _read_title(neighbour, capitalised=False, whole=True)
    for segment in reversed(segments):
        framed = _SUBJECT_NOUN.match(segment)
        before_noun = framed.group("title") if framed else segment
        title = _read_title(before_noun, capitalised=False, whole=True)
        if title and _fold(title.split()[0]) in _NOT_A_TITLE and not title.split()[0].isupper():
            continue  # "Your application", "Regarding your application"; not "IT Support"
        whole_title = bool(framed) and title is not None and len(title) >= len(before_noun) - 4
        if title and (whole_title or _fold(title.split()[-1]) in _JOB_NOUNS):
            return title
    return None


def _looks_like_job(title: str) -> bool:
    """A known job noun, a job-like ending, or an acronym (CFO)."""
    words = [_fold(word) for word in re.findall(r"[^\W\d_]+", title)]
    if not words or _REFERENCE.match(title):
        return False
    job_word = any(word in _JOB_NOUNS or word.endswith(_JOB_ENDINGS) for word in words)
    return job_word or bool(re.fullmatch(r"[A-Z]{2,4}", title))


def _read_title(span: str, capitalised: bool, whole: bool = False) -> str | None:
    """The job title a span starts with, up to punctuation or a word that cannot be part of
    one ("Data Engineer at Acme" -> "Data Engineer"; "poste de chef de partie, j'ai" -> "Chef
    de partie"). References in parentheses are left out; in a `whole` subject segment they
    are cut off instead of ending the title."""
    tokens = _TITLE_TOKEN.findall(span.split("\n", 1)[0].strip(" " + _QUOTES))
    words: list[str] = []
    for index, token in enumerate(tokens[:14]):
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        core = token.rstrip(",;:!?." + _QUOTES)
        if core.startswith("("):  # "(m/w/d)", "(Go)" belong to the title; "(R-20417)" does not
            if not words or _REFERENCE.search(core) or len(core) > 24:
                break
            words.append(core)
        elif not core or _ends_title(core, following, words, capitalised, whole):
            break
        else:  # "Shift Supervisor, Night Operations": a comma before a capital continues
            comma = token.endswith(",") and capitalised and following[:1].isupper()
            comma = comma and following != "I"
            words.append(core + "," if comma else core)
            if core != token and not comma:
                break
        if (core != token and core.startswith("(")) or len(words) >= 8:
            break
    return _finish_title(words, capitalised, whole)


def _ends_title(
    core: str, following: str, words: list[str], capitalised: bool, whole: bool
) -> bool:
    """Whether a word, seen with the next one, is no longer part of a title being read."""
    lower, next_word = core.lower(), _fold(following)
    if lower in _TITLE_STOPS or (not whole and _REFERENCE.search(core)):
        return True
    if lower in _CONJUNCTIONS and next_word in _TITLE_BREAKS:
        return True
    if lower == "en" and words:  # "conseillère en développement", "recepcionista en nuestro"
        return not following[:1].islower() or next_word in _TITLE_BREAKS
    if not capitalised or not words or core[0].isupper() or core[0].isdigit():
        return False
    dash = core in _DASHES and following[:1].isupper()
    return not (dash or lower in _CONNECTORS or words[-1].endswith("-"))


def _read_title_backwards(before: str) -> str | None:
    """The title ending a span: "thanks for your interest in the Data Engineer" -> "Data
    Engineer"."""
    words: list[str] = []
    for token in reversed(_WORD.findall(before)[-10:]):
        core = token.strip(_QUOTES)
        lower = core.lower()
        title_case = bool(words) and words[0][:1].isupper()
        ends_clause = core.endswith((":", "'s", "\u2019s")) or (
            core.endswith(",") and not title_case
        )
        stop = lower in _TITLE_BREAKS or not core.strip(">|*")
        if ends_clause or stop:
            break
        joins = (
            core[:1].isupper()
            or core[:1].isdigit()
            or lower in _CONNECTORS
            or core in _DASHES + "&/"
        )
        if title_case and not joins:
            break
        words.insert(0, core)
    return _finish_title(words, capitalised=False, whole=False)


def _finish_title(words: list[str], capitalised: bool, whole: bool) -> str | None:
    title = _LEADING_ARTICLE.sub("", " ".join(_strip_connectors(words))).strip(" :," + _DASHES)
    if whole:
        title = _REFERENCE_GROUP.sub("", title).strip(" :," + _DASHES)
    if not title or len(title.split()) > 9 or _fold(title.split()[0]) in _NOT_TITLE_STARTS:
        return None
    if (capitalised and not title[0].isupper()) or _fold(title) in _NOT_TITLES:
        return None
    return title[0].upper() + title[1:]
