"""A TCP proxy a test can break: forwards 127.0.0.1:<free port> to a server, and can be
taken down (connections refused), made silent (connections accepted, never answered)
and brought back up on the same port."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["up", "down", "silent"]


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode: Mode = "down"
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def set(self, mode: Mode) -> None:
        """Drop every connection, then listen (``up``, ``silent``) or not (``down``)."""
        self._close_all()
        self.mode = mode
        if mode == "down":
            return
        listener = socket.socket()
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.05)  # so the accept loop sees set() close it
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener, mode), daemon=True)
        self._acceptor.start()

    def _accept(self, listener: socket.socket, mode: Mode) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by set()
                return
            with self._lock:
                self._sockets.append(client)
            if mode == "silent":
                continue  # never read, never answer
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self._sockets.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        if listener is not None:
            # The accept loop holds the socket until its wait ends: only then is the
            # port free to listen on again.
            if self._acceptor is not None:
                self._acceptor.join()
            listener.close()
        with self._lock:
            sockets += self._sockets
            self._sockets = []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.set("down")
