"""A TCP proxy in front of the PostgreSQL server that a test can take down and bring back: an
outage of one test's database as its clients see it (every connection cut, new ones refused),
without touching the server that other tests, and other test runs, share."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class Outage:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        netloc = parts.netloc.rsplit("@", 1)
        auth = netloc[0] + "@" if len(netloc) == 2 else ""
        self.url = urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}"))
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._up = True
        self._downs = 0  # outages begun: a connection made across one is cut too
        self._closed = False
        self._flowing = threading.Event()  # cleared by hold(): connections stay, data waits
        self._flowing.set()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def down(self) -> None:
        """Cut every connection; refuse new ones until :meth:`up`."""
        with self._lock:
            self._up = False
            self._downs += 1
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def up(self) -> None:
        """After :meth:`down`, or :meth:`hold`."""
        with self._lock:
            self._up = True
        self._flowing.set()

    def hold(self) -> None:
        """A network that drops packets without a word: every connection stays open, new ones
        are accepted, and nothing goes through until :meth:`up` (then all of it does)."""
        self._flowing.clear()

    def close(self) -> None:
        self._closed = True
        self.down()
        self._flowing.set()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._up:
                    _close(client)  # refused, as by a server that is not there
                    continue
                downs = self._downs
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            # Forward each write at once: with Nagle's algorithm a small write waits for the
            # ACK of the one before, which the other end delays (40 ms a round for a pipeline).
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                # down() while this connection was being made (a slow machine): it would
                # outlive the outage, which must cut every connection.
                if self._downs != downs:
                    _close(client)
                    _close(server)
                    continue
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
