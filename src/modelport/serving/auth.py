"""API keys on every request: a bare ASGI layer in front of the whole server.

Each request presents a key as ``Authorization: Bearer <key>`` (or ``X-API-Key:
<key>``); `requirement` says what its route needs:

=====================================================  ==========================
route                                                  needs
=====================================================  ==========================
``/health/*``, ``/v2/health/*``, ``/ui``, ``/ui/*``    nothing (no data)
``GET /v1/auth/whoami``                                any valid key
``/v1/keys``, ``/v1/keys/*``                           ``admin``
``POST /v1/endpoints/{e}/predict``                     ``predict`` on ``e``
``POST /v2/models/{m}[/versions/{v}]/infer``           ``predict`` on ``m``
``GET /v2/models/{m}[/versions/{v}][/ready]``          ``predict`` on ``m``
``GET /v1/endpoints/{e}/predictions/{key}``            ``predict`` on ``e``
``POST /v1/feedback``                                  ``predict`` (every endpoint)
any other GET, HEAD or OPTIONS                         ``read``
any other method                                       ``admin``
=====================================================  ==========================

``admin`` covers everything. No key, or one that is unknown or revoked: 401 with
``WWW-Authenticate: Bearer``; a key whose scopes do not cover the route: 403, naming
the scope and the route. Both bodies are the server's usual JSON error.

The check costs one SHA-256 and two dict lookups: the key's id (``mp_<id>_...``) finds
its record in `KeyCache`, an in-process copy of the active keys that a background task
reloads from the registry every ``poll_interval_seconds``, and the hashes are compared
with `hmac.compare_digest`. No request queries the database, so a revoked key still
works until the next reload, at most ``poll_interval_seconds`` (plus the reload's own
time) later. If the registry cannot be read, the last keys loaded stay in force.

Contract for the layers inside (the rate limiter, the routes): an authenticated
request carries its key in the ASGI scope as ``scope["modelport.key"]``, a frozen
`modelport.registry.keys.ApiKey` (``id``, ``name``, ``scopes``, ``endpoints``,
``rate_limit``). Routes that need no key, and every request when auth is off, have no
``"modelport.key"`` entry.

Auth is on unless ``Settings.auth`` says otherwise: ``auto`` (the default) turns it on
whenever the server binds an address other than loopback (`auth_enabled`).

Example::

    app = protect(FastPath(...), settings, client)   # the app itself when auth is off
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from modelport import errors
from modelport.registry.keys import ID_LENGTH, PREFIX, ApiKey, KeyStore
from modelport.serving.fastpath import ASGIApp, Scope, Send, send_reply
from modelport.serving.http import PROBE_PREFIXES, Message, Receive, Reply, error_reply

if TYPE_CHECKING:
    from modelport.client import Client
    from modelport.settings import Settings

log = logging.getLogger(__name__)

#: Where the authenticated key is kept in the ASGI scope.
SCOPE_KEY = "modelport.key"
#: What a route needs: no key, any valid key, or a scope.
PUBLIC, ANY = "public", "any"
_PUBLIC_PREFIXES = ("/ui/", *PROBE_PREFIXES)
_READING = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE = ("www-authenticate", 'Bearer realm="modelport"')
_CREATE_HINT = "create one with `modelport keys create NAME --scope predict|read|admin`"

Requirement = tuple[str, str | None]
_PREFIX = PREFIX.encode()
_ID_START = len(_PREFIX)
_ID_END = _ID_START + ID_LENGTH


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_enabled(settings: Settings) -> tuple[bool, str]:
    """Whether the server asks for keys, and why (for the start-up log)."""
    if settings.auth != "auto":
        return settings.auth == "on", f"MODELPORT_AUTH={settings.auth}"
    if is_loopback(settings.host):
        return False, f"MODELPORT_AUTH=auto and {settings.host} is a loopback address"
    return True, f"MODELPORT_AUTH=auto and {settings.host} is not a loopback address"


def requirement(method: str, path: str) -> Requirement:
    """(what the route needs, the endpoint for ``predict``); see the module's table."""
    if path.startswith(_PUBLIC_PREFIXES) or path == "/ui":
        return PUBLIC, None
    parts = path.split("/")
    reading = method in _READING
    if len(parts) >= 4 and parts[1] == "v2" and parts[2] == "models":
        if _v2_predict(parts, reading):
            return "predict", parts[3]
    elif len(parts) >= 5 and parts[1] == "v1" and parts[2] == "endpoints":
        if parts[4] == "predict" and len(parts) == 5 and method == "POST":
            return "predict", parts[3]
        if parts[4] == "predictions" and len(parts) >= 6 and reading:
            return "predict", parts[3]
    elif path == "/v1/auth/whoami" and reading:
        return ANY, None
    elif path == "/v1/feedback" and method == "POST":
        # The application that asks for predictions sends their labels; the body names
        # the endpoints, so a key limited to some endpoints cannot vouch for it here.
        return "predict", None
    elif path == "/v1/keys" or path.startswith("/v1/keys/"):
        return "admin", None
    return ("read" if reading else "admin"), None


def _v2_predict(parts: list[str], reading: bool) -> bool:
    """``POST .../infer`` or a GET of model metadata or readiness, with or without
    ``/versions/{v}`` (``parts`` start ``["", "v2", "models", name]``)."""
    rest = parts[4:]
    if len(rest) >= 2 and rest[0] == "versions":
        rest = rest[2:]
    elif rest and rest[0] == "versions":
        return False
    if not reading:
        return rest == ["infer"]
    return rest in ([], ["ready"])


class KeyCache:
    """The active keys, by id, reloaded from the registry every ``interval`` seconds."""

    def __init__(self, store: KeyStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        #: digest and key by the key's id, in bytes as keys arrive in headers
        self.keys: dict[bytes, tuple[bytes, ApiKey]] = {}
        self._task: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        self.keys = {id_.encode(): found for id_, found in self.store.active().items()}

    def lookup(self, token: bytes) -> ApiKey | None:
        """The key ``token`` (``mp_<id>_<secret>``, as sent) is, if it is an active one."""
        if token[:_ID_START] != _PREFIX or token[_ID_END : _ID_END + 1] != b"_":
            return None
        found = self.keys.get(token[_ID_START:_ID_END])
        if found is None:
            return None
        digest, key = found
        return key if hmac.compare_digest(hashlib.sha256(token).digest(), digest) else None

    def start(self) -> None:
        if self._task is None and self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._reload_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _reload_forever(self) -> None:
        failing = False  # warn once when reloads start failing, and once when they recover
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:
                if not failing:
                    log.warning(
                        "could not reload the API keys (%s); the last ones loaded stay in "
                        "force, revoked or not, until the registry answers",
                        exc,
                    )
                failing = True
            else:
                if failing:
                    log.warning("reloaded the API keys again: %d active", len(self.keys))
                failing = False


def presented_key(scope: Scope) -> bytes | None:
    """The key in ``Authorization: Bearer`` or ``X-API-Key``, if the request has one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[:7].lower() == b"bearer " and value[7:].strip():
                return value[7:].strip()
        elif name == b"x-api-key" and value.strip():
            return value.strip()
    return None


def _unauthenticated(message: str, hint: str) -> Reply:
    reply = error_reply(errors.Unauthenticated(message, hint=hint))
    return replace(reply, headers=(*reply.headers, _CHALLENGE))


_NO_KEY = _unauthenticated(
    "this route needs an API key",
    "send `Authorization: Bearer <key>` or `X-API-Key: <key>`; " + _CREATE_HINT,
)
_BAD_KEY = _unauthenticated(
    "the API key is unknown or revoked",
    "`modelport keys list` shows the active keys; " + _CREATE_HINT,
)


def forbidden(key: ApiKey, need: str, endpoint: str | None, method: str, path: str) -> Reply:
    """The 403 for ``key`` on a route that needs ``need`` (on ``endpoint``)."""
    route = f"{method} {path}"
    if need == "predict" and "predict" in key.scopes and endpoint is None:
        message = (
            f"key {key.name!r} ({key.id}) may predict only on {', '.join(key.endpoints or ())};"
            f" {route} needs a predict key for every endpoint"
        )
        hint = "use a predict key created without --endpoint (or an admin key)"
    elif need == "predict" and "predict" in key.scopes and key.endpoints is not None:
        message = (
            f"key {key.name!r} ({key.id}) may predict only on "
            f"{', '.join(key.endpoints)}, not on {endpoint!r} ({route})"
        )
        hint = "use a key for that endpoint, or create one with --endpoint " + str(endpoint)
    else:
        message = f"key {key.name!r} ({key.id}) lacks the {need} scope that {route} needs"
        hint = f"use a key with the {need} scope (or admin)"
    return error_reply(errors.Forbidden(message, hint=hint))


class AuthMiddleware:
    """Refuse requests whose key does not cover their route; pass the others on with
    the key in ``scope["modelport.key"]``."""

    def __init__(self, app: ASGIApp, cache: KeyCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._watch_lifespan(receive), send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        need, endpoint = requirement(method, scope["path"])
        if need == PUBLIC:
            await self.app(scope, receive, send)
            return
        token = presented_key(scope)
        key = self.cache.lookup(token) if token is not None else None
        if key is None:
            await self._refuse(scope, send, _NO_KEY if token is None else _BAD_KEY)
        elif need != ANY and not key.grants(need, endpoint):
            await self._refuse(scope, send, forbidden(key, need, endpoint, method, scope["path"]))
        else:
            scope[SCOPE_KEY] = key
            await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, reply: Reply) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_reply(send, reply)

    def _watch_lifespan(self, receive: Receive) -> Callable[[], Awaitable[Message]]:
        """``receive`` that starts the key reloads with the app and stops them with it."""

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.cache.start()
            elif message["type"] == "lifespan.shutdown":
                await self.cache.stop()
            return message

        return wrapped


def protect(app: ASGIApp, settings: Settings, client: Client) -> ASGIApp:
    """``app`` behind `AuthMiddleware` when auth is on (`auth_enabled`), else ``app``;
    logs which, and why."""
    enabled, why = auth_enabled(settings)
    if not enabled:
        # Off on a public address is a choice to make loudly; off on loopback is the default.
        level = logging.INFO if is_loopback(settings.host) else logging.WARNING
        log.log(level, "auth is off (%s): every route is open to whoever reaches the server", why)
        return app
    cache = KeyCache(KeyStore(client.registry.engine), settings.poll_interval_seconds)
    cache.refresh()
    log.info("auth is on (%s): %d active API keys", why, len(cache.keys))
    if not cache.keys:
        log.warning(
            "auth is on and there is no active API key, so every request but health and "
            "the dashboard's files is refused (401); create one with "
            "`modelport keys create NAME --scope admin` (same home or registry as this server)"
        )
    return AuthMiddleware(app, cache)
