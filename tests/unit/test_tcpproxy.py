"""The loopback proxy used by benchmarks and fault tests, against a tiny local echo server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from tcpproxy import TcpProxy

TIMEOUT = 2.0


class EchoServer:
    """Echoes every byte back; optionally sends a greeting first. One thread per connection."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.received = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        with conn:
            try:
                if self.greeting:
                    conn.sendall(self.greeting)
                while not self._stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        return
                    with self._lock:
                        self.received += data
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._accepter.join(TIMEOUT)
        for thread in self._threads:
            thread.join(TIMEOUT)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port) as running:
        yield running


def connect(proxy: TcpProxy, timeout: float = TIMEOUT) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def recv_until_closed(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything until EOF or reset; True if it ended with a reset."""
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data), True
        if not chunk:
            return bytes(data), False
        data += chunk


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_counts_bytes_and_writes_both_ways(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert recv_exactly(sock, 5) == b"hello"
        sock.sendall(b"x" * 100_000)
        assert recv_exactly(sock, 100_000) == b"x" * 100_000
        wait_for(lambda: proxy.bytes_down == 100_005)
    stats = proxy.stats()
    assert (stats.bytes_up, stats.bytes_down) == (100_005, 100_005)
    assert stats.writes_up >= 2 and stats.writes_down >= 2
    assert stats.connections == 1
    proxy.reset_counters()
    assert proxy.stats() == type(stats)()


def test_parses_command_names_and_never_keeps_arguments(proxy: TcpProxy) -> None:
    # Literals whose lines look like commands must be skipped byte-exactly.
    literal = b"A9 DELETE x\r\nFrom someone here\r\n\r\nA10 NOOP\r\n"
    stream = (
        b"A001 CAPABILITY\r\n"
        b"A002 LOGIN alex@example.org s3cret-password\r\n"
        b"A003 APPEND INBOX (\\Seen) {%d}\r\n%s {5+}\r\nZ1 Z!\r\n"
        % (len(literal), literal)
        + b"ABCD4 uid fetch 1:* (BODY.PEEK[])\r\n"
        b"DONE\r\n"
        b"A005 AUTHENTICATE PLAIN\r\n"
        b"AGFsZXgAczNjcmV0\r\n"
        b"A006 LOGOUT\r\n"
    )
    with connect(proxy) as sock:
        for start in range(0, len(stream), 7):  # split at awkward places
            sock.sendall(stream[start : start + 7])
        assert recv_exactly(sock, len(stream)) == stream
    wait_for(lambda: len(proxy.commands) >= 6)
    assert proxy.commands == [
        "CAPABILITY",
        "LOGIN",
        "APPEND",
        "UID FETCH",
        "AUTHENTICATE",
        "LOGOUT",
    ]
    state = repr(vars(proxy)) + repr(proxy.stats())
    assert "s3cret" not in state and "AGFsZXgAczNjcmV0" not in state


def test_drop_all_resets_open_connections(proxy: TcpProxy) -> None:
    with connect(proxy) as first, connect(proxy) as second:
        for sock in (first, second):
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
        assert proxy.open_connections() == 2
        proxy.drop_all()
        assert proxy.open_connections() == 0
        for sock in (first, second):
            data, _reset = recv_until_closed(sock)
            assert data == b""
    # New connections still work.
    with connect(proxy) as sock:
        sock.sendall(b"again")
        assert recv_exactly(sock, 5) == b"again"


def test_stall_stops_forwarding_until_resumed(proxy: TcpProxy) -> None:
    with connect(proxy, timeout=0.5) as sock:
        sock.sendall(b"one")
        assert recv_exactly(sock, 3) == b"one"
        proxy.stall(True)
        sock.sendall(b"two")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert proxy.bytes_up == 3
        proxy.stall(False)
        assert recv_exactly(sock, 3) == b"two"


def test_stall_holds_new_connections_too() -> None:
    server = EchoServer(greeting=b"* OK hi\r\n")
    try:
        with TcpProxy("127.0.0.1", server.port) as proxy:
            proxy.stall(True)
            with connect(proxy, timeout=0.3) as sock:
                with pytest.raises(TimeoutError):
                    sock.recv(10)
                proxy.stall(False)
                sock.settimeout(TIMEOUT)
                assert recv_exactly(sock, 9) == b"* OK hi\r\n"
    finally:
        server.close()


def test_refuse_closes_new_connections_only(proxy: TcpProxy) -> None:
    with connect(proxy) as kept:
        kept.sendall(b"a")
        assert recv_exactly(kept, 1) == b"a"
        proxy.refuse(True)
        with connect(proxy) as refused:
            data, _reset = recv_until_closed(refused)
            assert data == b""
        kept.sendall(b"b")
        assert recv_exactly(kept, 1) == b"b"
        proxy.refuse(False)
        with connect(proxy) as sock:
            sock.sendall(b"c")
            assert recv_exactly(sock, 1) == b"c"
    assert proxy.connections == 3


def test_drop_after_bytes_down_cuts_at_the_exact_byte(proxy: TcpProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"0123456789")
        assert recv_exactly(sock, 10) == b"0123456789"
        proxy.drop_after_bytes_down(25)
        sock.sendall(bytes(range(100)) * 10)
        data, _reset = recv_until_closed(sock)
    assert data == (bytes(range(100)) * 10)[:25]
    assert proxy.open_connections() == 0
    # Disarmed after one cut.
    with connect(proxy) as sock:
        sock.sendall(b"x" * 50)
        assert recv_exactly(sock, 50) == b"x" * 50


def test_half_close_is_passed_on(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"bye")
        sock.shutdown(socket.SHUT_WR)
        data, reset = recv_until_closed(sock)
    assert (data, reset) == (b"bye", False)
    wait_for(lambda: proxy.open_connections() == 0)


def test_unreachable_target_closes_the_client() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with TcpProxy("127.0.0.1", dead_port) as proxy:
        try:
            sock = connect(proxy)
        except ConnectionResetError:
            return  # the reset can win the race with connect() returning
        with sock:
            data, _reset = recv_until_closed(sock)
        assert data == b""


def test_close_stops_the_thread_and_is_idempotent(echo: EchoServer) -> None:
    proxy = TcpProxy("127.0.0.1", echo.port).start()
    sock = connect(proxy)
    sock.sendall(b"x")
    assert recv_exactly(sock, 1) == b"x"
    proxy.close()
    proxy.close()
    assert [t for t in threading.enumerate() if t.name.startswith("tcpproxy")] == []
    data, _reset = recv_until_closed(sock)
    assert data == b""
    sock.close()
    with pytest.raises(RuntimeError):
        proxy.stall(True)
