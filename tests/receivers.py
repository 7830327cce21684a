"""Local stand-ins for the services alerts go to: an HTTP receiver (Slack, PagerDuty,
webhooks) and an SMTP server, both on 127.0.0.1. The fixtures ``http`` and ``mailbox``
in tests/conftest.py start them."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Captures requests; answers from ``replies`` (status, body, headers), then 200."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    replies: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    delay_s: float = 0.0


@contextmanager
def running_http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(
                Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            time.sleep(receiver.delay_s)
            status, text, headers = receiver.replies.pop(0) if receiver.replies else (200, "ok", {})
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text.encode())))
                self.end_headers()
                self.wfile.write(text.encode())
            except ConnectionError:  # the client gave up waiting
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Mailbox:
    """What an SMTP server on 127.0.0.1 received; ``data_reply`` answers DATA."""

    port: int = 0
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    data_reply: str = "250 Message accepted for delivery"

    def message(self, index: int = 0) -> Message:
        content = self.envelopes[index].content
        assert isinstance(content, bytes)
        return message_from_bytes(content)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply.startswith("250"):
            self.envelopes.append(envelope)
        return self.data_reply

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"hunter2", handled=False)


@contextmanager
def running_mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=box.authenticate,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],  # smtplib then logs in once, with PLAIN
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class HangingReceiver:
    """Accepts connections and reads what comes, never answers: a receiver that hangs."""

    url: str = ""
    connections: int = 0


@contextmanager
def running_hanging() -> Iterator[HangingReceiver]:
    receiver = HangingReceiver()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)
    receiver.url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            receiver.connections += 1
            held.append(conn)  # kept open, never read from nor answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
