"""Drafts and Sent: the config override wins, then SPECIAL-USE, then common names."""

from __future__ import annotations

import pytest

from nextround.daemon.errors import FolderError
from nextround.daemon.mailbox import FolderInfo, choose_folder, choose_folders


def folders(*specs: tuple[str, str]) -> list[FolderInfo]:
    return [FolderInfo(name, frozenset(flags.split())) for name, flags in specs]


GMAIL = folders(
    ("INBOX", "\\HasNoChildren"),
    ("[Gmail]/Entwürfe", "\\Drafts \\HasNoChildren"),
    ("[Gmail]/Gesendet", "\\Sent \\HasNoChildren"),
    ("Drafts", "\\HasNoChildren"),
)
PLAIN = folders(("INBOX", ""), ("Sent Items", ""), ("INBOX.Drafts", ""))


@pytest.mark.parametrize(
    ("listed", "role", "override", "expected"),
    [
        (GMAIL, "drafts", "", ("[Gmail]/Entwürfe", "special-use")),
        (GMAIL, "sent", "", ("[Gmail]/Gesendet", "special-use")),
        (GMAIL, "drafts", "Drafts", ("Drafts", "config")),
        (PLAIN, "sent", "", ("Sent Items", "common name")),
        (PLAIN, "drafts", "", ("INBOX.Drafts", "common name")),
        (
            folders(("INBOX", ""), ("sent messages", "")),
            "sent",
            "",
            ("sent messages", "common name"),
        ),
        (folders(("Box", "\\drafts")), "drafts", "", ("Box", "special-use")),
    ],
)
def test_choose_folder(
    listed: list[FolderInfo], role: str, override: str, expected: tuple[str, str]
) -> None:
    choice = choose_folder(role, listed, override)
    assert (choice.name, choice.how) == expected


def test_missing_folder_names_the_key() -> None:
    with pytest.raises(FolderError, match=r"set \[imap\] drafts"):
        choose_folder("drafts", folders(("INBOX", "")), "")
    with pytest.raises(FolderError, match=r"\[imap\] sent = 'Nope': no such folder"):
        choose_folder("sent", PLAIN, "Nope")


def test_every_folder_marked_sent_is_watched_the_common_name_first() -> None:
    """Dovecot's example configuration marks two \\Sent; the server's LIST order changes."""
    for order in (1, -1):
        listed = folders(
            ("INBOX", ""), ("Sent Messages", "\\Sent"), ("Outbox", "\\Sent"), ("Sent", "\\Sent")
        )[::order]
        chosen = choose_folders("sent", listed, "")
        assert [choice.name for choice in chosen] == ["Sent", "Sent Messages", "Outbox"]
        assert choose_folder("sent", listed, "").name == "Sent"
    assert [c.name for c in choose_folders("sent", listed, "Outbox")] == ["Outbox"]
