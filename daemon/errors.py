"""The one exception root of nextround and its few subclasses.

Adapters translate library errors (imaplib, ssl, socket, sqlite3) into these; the CLI turns
them into exit codes and one-line messages. None of them ever carries a password.
"""


class NextroundError(Exception):
    """Base of every error nextround raises on purpose."""


class ConfigError(NextroundError):
    """The configuration file is missing, unreadable or invalid (exit 2)."""


class UsageError(NextroundError):
    """The command line was used wrongly (exit 2)."""


class SecretError(NextroundError):
    """The password could not be obtained from its configured source."""


class MailboxError(NextroundError):
    """Talking to the IMAP server failed; `kind` names the cause for people and scripts."""

    kind = "imap"


class DnsError(MailboxError):
    """The server's host name does not resolve."""

    kind = "dns"


class ConnectError(MailboxError):
    """The TCP connection was refused, timed out or dropped."""

    kind = "connection"


class TlsError(MailboxError):
    """TLS failed: certificate not trusted, handshake failed, or STARTTLS not offered."""

    kind = "tls"


class AuthError(MailboxError):
    """The server rejected the credentials."""

    kind = "authentication"


class UnreadableError(ConnectError):
    """The connection dropped while the server was asked for one message alone, after it had
    refused a command naming it: that message, `uid`, may be one it cannot give; surely so
    if it gave another alone first (`witnessed`)."""

    def __init__(self, text: str, uid: int, *, witnessed: bool = True) -> None:
        super().__init__(text)
        self.uid = uid
        self.witnessed = witnessed


class RefusedError(MailboxError):
    """The server answered a command with NO or BAD: the connection itself is fine."""


class FolderError(MailboxError):
    """A folder we need does not exist or cannot be selected."""

    kind = "folder"


class StorageError(NextroundError):
    """The state database cannot be opened, migrated or written."""


class BusyError(NextroundError):
    """Another nextround cycle holds this state (the service, or `nextround once`)."""


class ConstraintError(NextroundError):
    """The state database refused a write that would contradict what it holds (a UNIQUE or
    CHECK constraint): a bug, not a fault of the machine. Unlike a StorageError, retrying
    cannot help, so the message it was for is recorded as failed and the cycle goes on."""


class MessageParseError(NextroundError):
    """A message could not be parsed; it is recorded with the reason and skipped."""


class ClassifierError(NextroundError):
    """The model could not be trained, stored or loaded."""


class TemplateError(NextroundError):
    """A draft template is missing or failed to render; the message names the file."""
