"""A loopback TCP proxy that counts IMAP traffic and injects network faults.

This module has no pytest dependency: benchmark scripts can use it after
``sys.path.insert(0, "<repo>/tests")``.

Usage::

    with TcpProxy(server.host, server.port_plain) as proxy:   # started on enter
        client = imapclient.IMAPClient("127.0.0.1", port=proxy.port, ssl=False)
        ...
        proxy.commands        # ["CAPABILITY", "LOGIN", "LIST", "STATUS", ...]
        proxy.bytes_down      # server -> client bytes so far
        proxy.reset_counters()

One thread runs a ``selectors`` loop for the listening socket and every
connection; ``close()`` stops it and joins it, and closes every socket.

Counters (``stats()`` returns them all at once, consistently):

* ``bytes_up`` / ``bytes_down``: bytes received from the client (forwarded
  to the server) and from the server (forwarded to the client).
* ``writes_up`` / ``writes_down``: ``recv()`` chunks in each direction; on
  loopback each is roughly one ``send()`` burst of the peer.
* ``connections``: connections accepted (refused ones included).
* ``commands``: the IMAP command names that clients sent, in order (across
  all connections).  A command is a client line that starts with a tag and
  a space; ``UID FETCH``/``UID SEARCH``/... are kept as two words.  Literals
  (``{n}`` / ``{n+}``) are skipped byte-exactly, so an APPENDed message is
  never mistaken for commands.  Only names are stored: the arguments (the
  LOGIN password, AUTHENTICATE data) never are.  Caveat: if a server
  rejects a synchronizing literal the client does not send it, and the
  parser would then swallow the next ``n`` bytes; no IMAP client we use
  does that in practice.

Faults, callable from any thread at any moment; each returns once the
proxy thread has applied it:

* ``drop_all()``: reset every open connection (``SO_LINGER`` 0, so both
  peers get an RST; data in flight is lost).
* ``stall(True)``: stop forwarding in both directions; sockets stay open,
  so a client's read times out.  New connections are accepted (and
  connected upstream) but nothing flows until ``stall(False)``.
* ``refuse(True)``: new connections are accepted and closed at once (the
  client sees EOF before the greeting).  Open connections are unaffected.
* ``drop_after_bytes_down(n)``: after ``n`` more bytes from the server
  (counted across all connections), the connection that carries the
  ``n``-th byte is cut: exactly ``n`` bytes reach its client, which then
  sees EOF (a FIN after the data, so the cut point is exact), and the
  server side is reset.  ``drop_after_bytes_down(None)`` disarms it.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import re
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = ["ProxyStats", "TcpProxy"]

LISTEN_HOST = "127.0.0.1"
RECV_SIZE = 65536
#: Stop reading from a side while this much is waiting to go to the other.
HIGH_WATER = 1024 * 1024
#: A client line longer than this is not parsed (the rest up to CRLF is ignored).
MAX_LINE = 65536
CONTROL_TIMEOUT = 5.0
JOIN_TIMEOUT = 5.0

# A tag is 1*<ASTRING-CHAR except "+"> (RFC 9051); a command name is an atom.
_COMMAND = re.compile(rb'([^\x00-\x20(){%*"\\+\x7f]+) ([A-Za-z][A-Za-z0-9-]*)(?: ([A-Za-z]+))?')
_LITERAL = re.compile(rb"~?\{(\d+)\+?\}$")
_TAGGED_TWO_WORDS = frozenset((b"UID",))


@dataclass(frozen=True)
class ProxyStats:
    bytes_up: int = 0
    bytes_down: int = 0
    writes_up: int = 0
    writes_down: int = 0
    connections: int = 0
    commands: tuple[str, ...] = ()


class _CommandParser:
    """Splits the client->server stream into IMAP command names, skipping literals."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        self._line = bytearray()
        self._overflow = False  # the current line is too long; ignore it up to CRLF
        self._literal = 0  # bytes of literal still to skip
        self._continued = False  # the next line continues a command (after a literal)

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._literal:
                skip = min(self._literal, end - pos)
                self._literal -= skip
                pos += skip
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._append(data[pos:])
                return
            self._append(data[pos : newline + 1])
            pos = newline + 1
            self._finish_line()

    def _append(self, chunk: bytes) -> None:
        if self._overflow:
            return
        if len(self._line) + len(chunk) > MAX_LINE:
            self._overflow = True
            self._line.clear()
            return
        self._line += chunk

    def _finish_line(self) -> None:
        line = bytes(self._line).rstrip(b"\r\n")
        overflow = self._overflow
        self._line.clear()
        self._overflow = False
        if overflow:
            self._continued = False
            return
        if not self._continued:
            match = _COMMAND.match(line)
            if match is not None:
                name = match.group(2).upper()
                sub = match.group(3)
                if name in _TAGGED_TWO_WORDS and sub is not None:
                    name += b" " + sub.upper()
                self._sink(name.decode("ascii"))
        literal = _LITERAL.search(line)
        if literal is not None:
            self._literal = int(literal.group(1))
            self._continued = True
        else:
            self._continued = False


class _Side:
    """One socket of a proxied connection and the bytes waiting to be sent to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.outgoing = bytearray()
        self.read_eof = False  # the peer sent FIN
        self.write_shut = False  # we sent FIN (after the other side's EOF was flushed)
        self.registered = 0  # selector events currently registered


@dataclass(eq=False)
class _Connection:
    client: _Side
    server: _Side
    connecting: bool = True
    cut_after_flush: bool = False  # drop_after_bytes_down reached: FIN the client once flushed
    parser: _CommandParser | None = field(default=None)


@dataclass
class _Control:
    action: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class TcpProxy:
    """A counting, fault-injecting TCP proxy on 127.0.0.1; see the module docstring."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LISTEN_HOST, 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.host = LISTEN_HOST
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._bytes_up = 0
        self._bytes_down = 0
        self._writes_up = 0
        self._writes_down = 0
        self._connections = 0
        self._commands: list[str] = []
        # Loop-thread state: only the proxy thread touches these after start().
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._controls: queue.SimpleQueue[_Control] = queue.SimpleQueue()
        self._open: set[_Connection] = set()
        self._owner: dict[socket.socket, tuple[_Connection, _Side]] = {}
        self._stalled = False
        self._refusing = False
        self._cut_budget: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Self:
        if self._closed:
            raise RuntimeError("TcpProxy is closed")
        if self._thread is None:
            self._selector.register(self._listener, selectors.EVENT_READ, "listener")
            self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            self._thread = threading.Thread(
                target=self._run, name=f"tcpproxy-{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close every socket; idempotent."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stopping.set()
            self._wake()
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():  # pragma: no cover - the loop never blocks that long
                raise RuntimeError("tcpproxy thread did not stop")
        for conn in list(self._open):
            self._abort(conn)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        # Fail anything still waiting for the (gone) thread.
        while True:
            try:
                control = self._controls.get_nowait()
            except queue.Empty:
                break
            control.error = RuntimeError("TcpProxy is closed")
            control.done.set()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TcpProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]}>"

    # -- counters ---------------------------------------------------------

    @property
    def bytes_up(self) -> int:
        with self._lock:
            return self._bytes_up

    @property
    def bytes_down(self) -> int:
        with self._lock:
            return self._bytes_down

    @property
    def writes_up(self) -> int:
        with self._lock:
            return self._writes_up

    @property
    def writes_down(self) -> int:
        with self._lock:
            return self._writes_down

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def commands(self) -> list[str]:
        """A copy of the command names seen since the last reset, in order."""
        with self._lock:
            return list(self._commands)

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                self._bytes_up,
                self._bytes_down,
                self._writes_up,
                self._writes_down,
                self._connections,
                tuple(self._commands),
            )

    def reset_counters(self) -> None:
        with self._lock:
            self._bytes_up = self._bytes_down = 0
            self._writes_up = self._writes_down = 0
            self._connections = 0
            self._commands.clear()

    def open_connections(self) -> int:
        """Connections currently open through the proxy."""
        result: list[int] = []
        self._call(lambda: result.append(len(self._open)))
        return result[0]

    # -- faults -----------------------------------------------------------

    def drop_all(self) -> None:
        """Reset every open connection (both peers get an RST)."""

        def action() -> None:
            for conn in list(self._open):
                self._abort(conn)

        self._call(action)

    def stall(self, stalled: bool) -> None:
        """Stop (True) or resume (False) forwarding in both directions."""

        def action() -> None:
            self._stalled = stalled
            for conn in list(self._open):
                self._update(conn)

        self._call(action)

    def refuse(self, refusing: bool) -> None:
        """Accept-and-close new connections (True), or serve them again (False)."""

        def action() -> None:
            self._refusing = refusing

        self._call(action)

    def drop_after_bytes_down(self, n: int | None) -> None:
        """Cut the connection that carries the ``n``-th next server byte; None disarms."""
        if n is not None and n < 0:
            raise ValueError("n must be >= 0")

        def action() -> None:
            self._cut_budget = n

        self._call(action)

    # -- the loop thread --------------------------------------------------

    def _call(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the proxy thread (or here, if not running) and wait for it."""
        if self._closed:
            raise RuntimeError("TcpProxy is closed")
        thread = self._thread
        if thread is None or not thread.is_alive():
            action()
            return
        if threading.current_thread() is thread:
            action()
            return
        control = _Control(action)
        self._controls.put(control)
        self._wake()
        if not control.done.wait(CONTROL_TIMEOUT):
            raise RuntimeError("tcpproxy thread did not answer")
        if control.error is not None:
            raise control.error

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, events in self._selector.select(timeout=1.0):
                    if key.data == "listener":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    elif isinstance(key.fileobj, socket.socket):
                        self._service(key.fileobj, events)
                    if self._stopping.is_set():
                        break
                self._run_controls()
        finally:
            self._run_controls()

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass

    def _run_controls(self) -> None:
        while True:
            try:
                control = self._controls.get_nowait()
            except queue.Empty:
                return
            try:
                control.action()
            except BaseException as error:  # handed back to the calling thread
                control.error = error
            control.done.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            with self._lock:
                self._connections += 1
            if self._refusing:
                client.close()
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setblocking(False)
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(_Side(client), _Side(server))
            conn.parser = _CommandParser(self._record_command)
            self._open.add(conn)
            self._owner[client] = (conn, conn.client)
            self._owner[server] = (conn, conn.server)
            code = server.connect_ex(self.target)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                self._abort(conn)
                continue
            self._update(conn)

    def _record_command(self, name: str) -> None:
        with self._lock:
            self._commands.append(name)

    def _service(self, sock: socket.socket, events: int) -> None:
        owner = self._owner.get(sock)
        if owner is None:
            return
        conn, side = owner
        if conn.connecting:
            if side is conn.server and events & selectors.EVENT_WRITE:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    self._abort(conn)
                    return
                conn.connecting = False
            self._update(conn)
            return
        try:
            if events & selectors.EVENT_WRITE:
                self._flush(conn, side)
            if conn in self._open and events & selectors.EVENT_READ:
                self._receive(conn, side)
        except OSError:
            self._abort(conn)
            return
        if conn in self._open:
            self._update(conn)

    def _receive(self, conn: _Connection, side: _Side) -> None:
        other = conn.server if side is conn.client else conn.client
        try:
            data = side.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            side.read_eof = True
            self._flush(conn, other)
            return
        upstream = side is conn.client
        if upstream:
            with self._lock:
                self._bytes_up += len(data)
                self._writes_up += 1
            if conn.parser is not None:
                conn.parser.feed(data)
        else:
            if self._cut_budget is not None and len(data) >= self._cut_budget:
                data = data[: self._cut_budget]
                self._cut_budget = None
                conn.cut_after_flush = True
                side.read_eof = True  # read nothing more from this server
            elif self._cut_budget is not None:
                self._cut_budget -= len(data)
            with self._lock:
                self._bytes_down += len(data)
                self._writes_down += 1
        other.outgoing += data
        self._flush(conn, other)

    def _flush(self, conn: _Connection, side: _Side) -> None:
        """Send what is waiting for ``side``; then pass on an EOF or a cut."""
        if self._stalled or conn.connecting or conn not in self._open:
            return
        while side.outgoing:
            try:
                sent = side.sock.send(side.outgoing)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the peer reset or went away
                self._abort(conn)
                return
            del side.outgoing[:sent]
        if side is conn.client and conn.cut_after_flush:
            self._cut(conn)
            return
        other = conn.server if side is conn.client else conn.client
        if other.read_eof and not side.write_shut:
            side.write_shut = True
            with contextlib.suppress(OSError):
                side.sock.shutdown(socket.SHUT_WR)
        if conn.client.write_shut and conn.server.write_shut:
            self._close_conn(conn)

    def _update(self, conn: _Connection) -> None:
        """Register each socket for what it can do now (nothing while stalled)."""
        if conn not in self._open:
            return
        for side, other in ((conn.client, conn.server), (conn.server, conn.client)):
            events = 0
            if conn.connecting:
                if side is conn.server:
                    events = selectors.EVENT_WRITE
            elif not self._stalled:
                if not side.read_eof and len(other.outgoing) < HIGH_WATER:
                    events |= selectors.EVENT_READ
                if side.outgoing:
                    events |= selectors.EVENT_WRITE
            if events == side.registered:
                continue
            if side.registered and events:
                self._selector.modify(side.sock, events)
            elif events:
                self._selector.register(side.sock, events)
            else:
                self._selector.unregister(side.sock)
            side.registered = events
        if not self._stalled and not conn.connecting:
            # A side that has nothing left to read or write would never be woken again.
            for side in (conn.client, conn.server):
                other = conn.server if side is conn.client else conn.client
                if other.read_eof and not side.outgoing and not side.write_shut:
                    self._flush(conn, side)
                    if conn not in self._open:
                        return

    def _cut(self, conn: _Connection) -> None:
        """drop_after_bytes_down reached: FIN to the client after its data, RST upstream."""
        with contextlib.suppress(OSError):
            conn.client.sock.shutdown(socket.SHUT_RDWR)
        _set_linger_zero(conn.server.sock)
        self._close_conn(conn)

    def _abort(self, conn: _Connection) -> None:
        _set_linger_zero(conn.client.sock)
        _set_linger_zero(conn.server.sock)
        self._close_conn(conn)

    def _close_conn(self, conn: _Connection) -> None:
        if conn not in self._open:
            return
        self._open.discard(conn)
        for side in (conn.client, conn.server):
            self._owner.pop(side.sock, None)
            if side.registered:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(side.sock)
                side.registered = 0
            side.sock.close()


def _set_linger_zero(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
