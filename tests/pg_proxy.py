"""A TCP proxy in front of the test's PostgreSQL server that a test can cut and restore: a
real outage for one test's connections (every open one drops, new ones are refused) without
stopping the server the other tests share."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def _upstream_address(url: str) -> tuple[int, str | tuple[str, int]]:
    info = conninfo_to_dict(url)
    host, port = info.get("host") or "/tmp", int(info.get("port") or 5432)
    if host.startswith("/"):  # a unix socket directory (the embedded server)
        return socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"
    return socket.AF_INET, (host, port)


class PgProxy:
    """127.0.0.1:<port> -> the server of `url`. `url_for(dbname)` gives a URL through it."""

    def __init__(self, url: str) -> None:
        self._family, self._target = _upstream_address(url)
        self._base = conninfo_to_dict(url)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url_for(self, dbname: str) -> str:
        info = {**self._base, "host": "127.0.0.1", "port": str(self.port), "dbname": dbname}
        return make_conninfo(**info)

    def cut(self) -> None:
        """The database is gone: open connections drop, new ones are closed at once."""
        self._up.clear()
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closing = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                server = socket.socket(self._family, socket.SOCK_STREAM)
                server.connect(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):  # wakes the other direction's pump too
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            source.close()
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


@contextmanager
def pg_proxy(url: str) -> Iterator[PgProxy]:
    proxy = PgProxy(url)
    try:
        yield proxy
    finally:
        proxy.close()
