"""A logged-in session: the mailbox connection plus the folders resolved for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nextround.daemon.config import Config
from nextround.daemon.credentials import read_secret
from nextround.daemon.imap import connect
from nextround.daemon.mailbox import Mailbox
from nextround.daemon.sync import FolderRef, resolve_folders

logger = logging.getLogger(__name__)


@dataclass
class Session:
    mailbox: Mailbox
    folders: dict[str, FolderRef]

    def close(self) -> None:
        self.mailbox.logout()


def open_session(config: Config) -> Session:
    """Log in and find INBOX, Drafts and Sent. The password lives only for this call."""
    mailbox = connect(config.imap, read_secret(config.imap))
    try:
        folders = resolve_folders(mailbox, config)
    except BaseException:
        mailbox.logout()
        raise
    return Session(mailbox, folders)
