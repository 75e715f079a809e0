"""Tests of the Dovecot test harness itself (tests/dovecot.py, tests/conftest.py)."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime

import imapclient
import pytest
from dovecot import SPECIAL_FOLDERS, Dovecot, DovecotError, MailUser, live_group_members
from imapclient.exceptions import CapabilityError, IMAPClientAbortError, LoginError
from imapclient.imapclient import DRAFTS, SENT


def message(n: int, subject: str = "harness") -> bytes:
    return (
        "From: Alex <alex@example.org>\r\n"
        "To: Sam <sam@example.org>\r\n"
        f"Subject: {subject} {n}\r\n"
        f"Message-ID: <{subject}-{n}@example.org>\r\n"
        "Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
        "\r\n"
        f"Body of message {n}.\r\n"
    ).encode()


def greeting(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as sock:
        return sock.recv(4096)


def peer_subject_alt_names(client: imapclient.IMAPClient) -> set[tuple[str, str]]:
    sock = client.socket()
    assert isinstance(sock, ssl.SSLSocket)
    cert = sock.getpeercert()
    assert cert is not None
    names = cert["subjectAltName"]
    assert isinstance(names, tuple)
    return {(str(entry[0]), str(entry[1])) for entry in names}


def test_plain_login_without_starttls(dovecot: Dovecot, mailbox_user: MailUser) -> None:
    assert b"STARTTLS" in greeting(dovecot.host, dovecot.port_plain)
    with imapclient.IMAPClient(dovecot.host, port=dovecot.port_plain, ssl=False) as client:
        client.login(mailbox_user.username, mailbox_user.password)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_starttls_verifies_with_ca_file(dovecot: Dovecot, mailbox_user: MailUser) -> None:
    assert dovecot.ca_file is not None
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    with imapclient.IMAPClient(dovecot.host, port=dovecot.port_plain, ssl=False) as client:
        client.starttls(ssl_context=context)
        client.login(mailbox_user.username, mailbox_user.password)
        assert ("IP Address", "127.0.0.1") in peer_subject_alt_names(client)


def test_implicit_tls_verifies_with_ca_file(dovecot: Dovecot, mailbox_user: MailUser) -> None:
    assert dovecot.port_tls is not None and dovecot.ca_file is not None
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    # "localhost" checks the DNS name in the certificate, not just the IP.
    with imapclient.IMAPClient(
        dovecot.host, port=dovecot.port_tls, ssl=True, ssl_context=context
    ) as client:
        client.login(mailbox_user.username, mailbox_user.password)
        assert ("DNS", "localhost") in peer_subject_alt_names(client)
    with mailbox_user.client(tls=True) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_implicit_tls_refused_without_ca_file(dovecot: Dovecot) -> None:
    system_store = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient(
            dovecot.host, port=dovecot.port_tls, ssl=True, ssl_context=system_store
        )


def test_starttls_refused_without_ca_file(dovecot: Dovecot) -> None:
    system_store = ssl.create_default_context()
    with (
        imapclient.IMAPClient(dovecot.host, port=dovecot.port_plain, ssl=False) as client,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client.starttls(ssl_context=system_store)


def test_nostarttls_listener_offers_no_starttls(dovecot: Dovecot, mailbox_user: MailUser) -> None:
    assert b"STARTTLS" not in greeting(dovecot.host_nostarttls, dovecot.port_nostarttls)
    with imapclient.IMAPClient(
        dovecot.host_nostarttls, port=dovecot.port_nostarttls, ssl=False
    ) as client:
        assert b"STARTTLS" not in client.capabilities()
        with pytest.raises(CapabilityError):
            client.starttls(ssl_context=dovecot.ssl_context())
        client.login(mailbox_user.username, mailbox_user.password)


def test_special_use_folders_are_listed(mailbox_user: MailUser) -> None:
    listed = dict((name, flags) for flags, name in mailbox_user.folders())
    for name, flag in SPECIAL_FOLDERS.items():
        assert flag.encode() in listed[name]
    assert "INBOX" in listed
    with mailbox_user.client() as client:
        assert client.find_special_folder(DRAFTS) == "Drafts"
        assert client.find_special_folder(SENT) == "Sent"
        subscribed = {name for _flags, _delim, name in client.list_sub_folders()}
        assert set(SPECIAL_FOLDERS) <= subscribed


def test_create_folder_with_special_use(mailbox_user: MailUser) -> None:
    # A name no other test uses: the flag applies to this name for all users.
    mailbox_user.create_folder("Harness Archive", special_use="\\Archive")
    listed = dict((name, flags) for flags, name in mailbox_user.folders())
    assert b"\\Archive" in listed["Harness Archive"]


def test_append_returns_increasing_uids(mailbox_user: MailUser) -> None:
    raws = [message(n) for n in range(3)]
    uids = [mailbox_user.append("INBOX", raw) for raw in raws]
    assert uids == sorted(uids) and len(set(uids)) == 3
    assert mailbox_user.uids("INBOX") == uids
    assert mailbox_user.fetch_raw("INBOX") == dict(zip(uids, raws, strict=True))
    assert mailbox_user.exists("INBOX") == 3


def test_append_keeps_flags_and_date(mailbox_user: MailUser) -> None:
    when = datetime(2023, 1, 2, 10, 0, tzinfo=UTC)
    uid = mailbox_user.append("Drafts", message(1), flags=[b"\\Draft", b"\\Seen"], date=when)
    with mailbox_user.client() as client:
        client.select_folder("Drafts", readonly=True)
        data = client.fetch([uid], ["FLAGS", "INTERNALDATE"])[uid]
    assert {b"\\Draft", b"\\Seen"} <= set(data[b"FLAGS"])
    assert data[b"INTERNALDATE"].astimezone(UTC) == when


def test_default_user_helpers(dovecot: Dovecot) -> None:
    folder = "harness-default-user"
    dovecot.create_folder(folder)
    try:
        uid = dovecot.append(folder, message(1))
        assert dovecot.uids(folder) == [uid]
        with dovecot.client() as client:
            assert client.select_folder(folder)[b"EXISTS"] == 1
    finally:
        dovecot.delete_folder(folder)
    assert dovecot.username and dovecot.password


def test_users_are_isolated(dovecot: Dovecot, mailbox_user: MailUser) -> None:
    other = dovecot.add_user("harness-other@example.org")
    mailbox_user.append("INBOX", message(1))
    assert other.uids("INBOX") == []
    with pytest.raises(LoginError):
        MailUser(dovecot, "harness-nobody@example.org", "x").client()
    with pytest.raises(LoginError):
        MailUser(dovecot, other.username, "wrong password").client()


def test_set_password_takes_effect(dovecot: Dovecot, mailbox_user: MailUser) -> None:
    mailbox_user.client().logout()
    changed = dovecot.set_password(mailbox_user.username, "new-secret")
    with pytest.raises(LoginError):
        mailbox_user.client()
    changed.client().logout()


def test_delete_and_recreate_changes_uidvalidity(mailbox_user: MailUser) -> None:
    mailbox_user.create_folder("Projects/2024")
    before = mailbox_user.uidvalidity("Projects/2024")
    mailbox_user.append("Projects/2024", message(1))
    mailbox_user.delete_folder("Projects/2024")
    mailbox_user.create_folder("Projects/2024")
    assert mailbox_user.uidvalidity("Projects/2024") != before
    assert mailbox_user.uids("Projects/2024") == []


def test_restart_keeps_mail_and_ports(dovecot: Dovecot, mailbox_user: MailUser) -> None:
    ports = (dovecot.port_plain, dovecot.port_tls, dovecot.port_nostarttls)
    uid = mailbox_user.append("INBOX", message(1))
    uidvalidity = mailbox_user.uidvalidity("INBOX")
    old_pid = dovecot.pid
    client = mailbox_user.client()
    client.select_folder("INBOX")

    dovecot.restart()

    # Connections from before the restart are gone, like with a real server.
    with pytest.raises((IMAPClientAbortError, OSError)):
        client.noop()
    client.shutdown()
    assert dovecot.running and dovecot.pid != old_pid
    assert (dovecot.port_plain, dovecot.port_tls, dovecot.port_nostarttls) == ports
    assert mailbox_user.uids("INBOX") == [uid]
    assert mailbox_user.uidvalidity("INBOX") == uidvalidity
    assert mailbox_user.fetch_raw("INBOX") == {uid: message(1)}
    with mailbox_user.client(tls=True):
        pass


def test_seed_maildir(mailbox_user: MailUser) -> None:
    # Never logged in before: seed_maildir must make Dovecot create INBOX.
    written = mailbox_user.seed_maildir("INBOX", (message(n, "seed") for n in range(1000)))
    assert written == 1000
    assert mailbox_user.exists("INBOX") == 1000
    uids = mailbox_user.uids("INBOX")
    assert uids == list(range(1, 1001))
    with mailbox_user.client() as client:
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch([1, 1000], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "FLAGS"])
    assert b"seed 0\r\n" in fetched[1][b"BODY[HEADER.FIELDS (SUBJECT)]"]
    assert b"seed 999\r\n" in fetched[1000][b"BODY[HEADER.FIELDS (SUBJECT)]"]
    assert b"\\Seen" not in fetched[1][b"FLAGS"]

    # More messages into a folder that does not exist yet, already read.
    mailbox_user.seed_maildir("Archive/2023", [message(1, "old")], seen=True)
    assert mailbox_user.fetch_raw("Archive/2023") == {1: message(1, "old")}
    with mailbox_user.client() as client:
        client.select_folder("Archive/2023", readonly=True)
        assert b"\\Seen" in client.fetch([1], ["FLAGS"])[1][b"FLAGS"]
    mailbox_user.seed_maildir("INBOX", [message(1000, "seed")])
    assert mailbox_user.uids("INBOX")[-1] == 1001


def test_instance_without_tls_and_clean_close() -> None:
    server = Dovecot.start(ssl=False)
    try:
        assert server.port_tls is None and server.ca_file is None
        assert b"STARTTLS" not in greeting(server.host, server.port_plain)
        with server.client() as client:
            assert client.select_folder("INBOX")[b"EXISTS"] == 0
        pid = server.pid
        assert pid is not None
    finally:
        server.close()
    assert not server.running
    assert live_group_members(pid) == []
    assert not server.workdir.exists()
    # Nothing keeps the port: it can be bound again at once.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((server.host, server.port_plain))


def test_start_failure_reports_the_log() -> None:
    server = Dovecot(ssl=False)
    try:
        with server.config_path.open("a") as config:
            config.write("no_such_setting = yes\n")
        with pytest.raises(DovecotError, match="no_such_setting"):
            server.launch()
        assert not server.running
    finally:
        server.close()
