"""`security = "plain"` is allowed for names and addresses that are loopback, but a name is
the resolver's to answer: "localhost." (with the root dot) and "localhost.localdomain" are
not in a stock Debian /etc/hosts, so glibc asks DNS for them, and whoever answers would
receive the LOGIN with the password in clear text (found in review, session 13).

The namespace test runs nextround in a private mount namespace whose /etc/resolv.conf names
a DNS server started here (nothing on the machine is changed); that server answers every A
query with a non-loopback address of this machine, where a fake IMAP server records what it
is sent. It needs root (unshare + mount) and a non-loopback IPv4 address, else it skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dovecot import Dovecot, MailUser
from support import ConfigWriter

from nextround.daemon.errors import TlsError
from nextround.daemon.imap import loopback_addresses

PASSWORD = "Plain-Text-Password-XYZZY-42"


def _non_loopback_ipv4() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.123", 9))  # no packet is sent: only the route is chosen
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


class FakeDns(threading.Thread):
    """Answers every A query with `address`, every other query with no answer."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 53))
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        self.queries: list[str] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            ident = data[:2]
            position, labels = 12, []
            while data[position]:
                length = data[position]
                labels.append(data[position + 1 : position + 1 + length].decode())
                position += 1 + length
            qtype = struct.unpack("!H", data[position + 1 : position + 3])[0]
            question = data[12 : position + 5]
            self.queries.append(".".join(labels))
            answer = b""
            if qtype == 1:
                answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4)
                answer += socket.inet_aton(self.address)
            header = ident + b"\x81\x80" + struct.pack("!HHHH", 1, 1 if answer else 0, 0, 0)
            self.sock.sendto(header + question + answer, peer)

    def close(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self.sock.close()


class FakeImap(threading.Thread):
    """Plain-text IMAP that offers LOGIN and records every line it is sent."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server((address, 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []

    def run(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        with connection, connection.makefile("rb") as lines:
            connection.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
            for line in lines:
                self.received.append(line)
                tag, _, rest = line.partition(b" ")
                if rest.upper().startswith(b"CAPABILITY"):
                    connection.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
                else:
                    connection.sendall(tag + b" NO [AUTHENTICATIONFAILED] no\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("host", ["localhost.", "localhost.localdomain"])
def test_plain_is_never_sent_to_an_address_dns_gives_for_a_loopback_looking_name(
    tmp_path: Path, host: str
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /etc/resolv.conf")
    outside = _non_loopback_ipv4()
    if outside is None:
        pytest.skip("no non-loopback IPv4 address")
    try:
        dns = FakeDns(outside)
    except OSError:
        pytest.skip("UDP port 53 on 127.0.0.1 is taken")
    imap = FakeImap(outside)
    dns.start()
    imap.start()
    try:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD + "\n")
        password_file.chmod(0o600)
        config = tmp_path / "config.toml"
        config.write_text(
            "[imap]\n"
            f'host = "{host}"\n'
            f"port = {imap.port}\n"
            'security = "plain"\n'
            'username = "me@example.org"\n'
            f'password_file = "{password_file}"\n'
            "timeout = 10.0\n"
            "[identity]\n"
            'name = "Alex Doe"\n'
            'email = "me@example.org"\n'
            "[state]\n"
            f'database = "{tmp_path / "state" / "state.db"}"\n'
        )
        done = check_config_with(resolv, "/etc/resolv.conf", config)
    finally:
        dns.close()
        imap.close()
    imap.join(timeout=5)
    sent = b"".join(imap.received)
    # What nextround did: asked DNS for the name, and logged in in clear text wherever the
    # answer pointed.
    assert PASSWORD.encode() not in sent, (
        f"{host!r} with security = plain: the password went in clear text to {outside} "
        f"(DNS queries: {dns.queries}); nextround said: {done.stdout + done.stderr}"
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_plain_text_goes_to_the_loopback_address_the_host_names(host: str) -> None:
    addresses = loopback_addresses(host, 143)
    assert addresses and set(addresses) <= {"127.0.0.1", "::1"}, addresses


@pytest.mark.parametrize("host", ["192.0.2.1", "2001:db8::1"])
def test_plain_text_to_an_address_that_is_not_loopback_is_refused(host: str) -> None:
    with pytest.raises(TlsError, match="not to loopback") as caught:
        loopback_addresses(host, 143)
    assert host in str(caught.value)


def check_config_with(
    replacement: Path, system_file: str, config: Path
) -> subprocess.CompletedProcess[str]:
    """`nextround check-config` in a private mount namespace where `system_file` (the
    resolver's configuration, the hosts file) is `replacement`."""
    inner = (
        f"mount --bind {replacement} {system_file} && exec "
        f"{sys.executable} -m nextround.daemon.cli -c {config} check-config"
    )
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", inner],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


STOCK_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def test_plain_localhost_reaches_a_server_on_127_0_0_1_when_hosts_lists_ipv6_first(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: MailUser, write_config: ConfigWriter
) -> None:
    """A stock Debian /etc/hosts names localhost twice, and glibc gives ::1 first: a server
    that listens on 127.0.0.1 alone is reached at the second address (a first fix tried the
    first only: found in review, session 13). Runs nextround in a private mount namespace
    with that hosts file; needs root and unshare, else it skips."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /etc/hosts")
    assert dovecot.host == "127.0.0.1"  # the test server listens on IPv4 loopback only
    hosts = tmp_path / "hosts"
    hosts.write_text(STOCK_HOSTS)
    config = write_config(mailbox_user, host="localhost")
    done = check_config_with(hosts, "/etc/hosts", config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "login        ok" in done.stdout
