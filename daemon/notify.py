"""systemd's notify protocol: one datagram to $NOTIFY_SOCKET, never blocking the daemon."""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


class Notifier:
    """Sends READY=1, STATUS=..., WATCHDOG=1, STOPPING=1 when run by systemd; else nothing."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address: str | None = None
        self.socket: socket.socket | None = None
        if address:
            # A leading "@" names a socket in the abstract namespace.
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self.socket is not None

    def send(self, *assignments: str) -> None:
        if self.socket is None or self.address is None:
            return
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            self.socket.sendto(payload, self.address)
        except OSError as error:  # EAGAIN, or systemd gone: a notification is never worth a stall
            logger.debug("notify %r dropped: %s", assignments, error)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
