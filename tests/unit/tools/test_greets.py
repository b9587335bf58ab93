"""A server is up when it greets, not when a connect succeeds (``greets``): a silent peer
(as a TCP self-connect is) or another program on the port is not the server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from alert_timing.nats_server import free_port, greets


@contextmanager
def listener(says: bytes | None) -> Iterator[int]:
    """A loopback listener that says ``says`` to each connection (None: says nothing)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)  # accept wakes up to see the stop
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # the prober may hang up first
                if says is not None:
                    conn.sendall(says)
                conn.recv(1)  # until the prober hangs up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(5)


def test_a_server_that_greets_is_up() -> None:
    with listener(b"INFO {\"server_id\":\"x\"}\r\n") as port:
        assert greets("127.0.0.1", port, b"INFO ")
    with listener(b"SSH-2.0-OpenSSH_9.2\r\n") as port:
        assert greets("127.0.0.1", port, b"SSH-")


def test_a_silent_peer_or_another_program_is_not() -> None:
    with listener(None) as port:
        assert not greets("127.0.0.1", port, b"INFO ", timeout=0.2)
    with listener(b"HTTP/1.1 400 Bad Request\r\n") as port:
        assert not greets("127.0.0.1", port, b"SSH-")


def test_nothing_listening_is_not() -> None:
    assert not greets("127.0.0.1", free_port(), b"INFO ")
