"""API keys: who may call the server, and for what.

A key reads ``mp_<id>_<secret>``: ``id`` (8 characters) is its public part, by which it
is found, listed and revoked; ``secret`` is 32 random bytes (``secrets.token_urlsafe``).
Only the SHA-256 of the whole key is stored. A slow password hash (bcrypt, scrypt)
protects guessable secrets; a 256-bit random one cannot be guessed from its hash, so a
fast hash loses nothing and keeps the server's check to a microsecond.

Scopes, in `SCOPES`:

- ``predict``: the predict routes, on every endpoint or only on ``endpoints``;
- ``read``: every other GET (dashboard data, metrics, logs, the control API's reads);
- ``admin``: everything, including every change (register, deploy, rollout, keys).

``admin`` implies ``read`` and ``predict``; ``read`` does not imply ``predict``.

Example::

    store = KeyStore(registry.engine)
    created = store.create("prometheus", scopes=["read"], actor="ana")
    print(created.token)               # shown once: only its hash is kept
    store.revoke("prometheus", actor="ana")
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry import schema as t
from modelport.registry.entities import iso, now, utc
from modelport.uri import check_name

_TABLE = t.api_keys

#: Every scope, weakest first.
SCOPES = ("predict", "read", "admin")
PREFIX = "mp_"
ID_LENGTH = 8
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class ApiKey:
    """What the server knows of a valid key on each request.

    ``endpoints`` limits ``predict`` to those endpoints (None: every endpoint);
    ``rate_limit`` is the key's allowance in requests per second (None: no limit of its
    own).
    """

    id: str
    name: str
    scopes: frozenset[str]
    endpoints: tuple[str, ...] | None = None
    rate_limit: float | None = None

    def grants(self, scope: str, endpoint: str | None = None) -> bool:
        """Whether the key covers ``scope`` (on ``endpoint``, for ``predict``)."""
        if "admin" in self.scopes:
            return True
        if scope not in self.scopes:
            return False
        return scope != "predict" or self.endpoints is None or endpoint in self.endpoints

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes, key=SCOPES.index),
            "endpoints": list(self.endpoints) if self.endpoints is not None else None,
            "rate_limit": self.rate_limit,
        }


@dataclass(frozen=True)
class KeyRecord:
    """A key as the registry keeps it: its grants, who made it and when, and whether
    (and when) it was revoked. Never the key itself."""

    key: ApiKey
    created_at: datetime
    created_by: str | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.key.to_dict(),
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "revoked_at": iso(self.revoked_at),
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True)
class CreatedKey:
    """A new key's record and the key itself, which exists only here."""

    record: KeyRecord
    token: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), "key": self.token}


def token_hash(token: str) -> str:
    """The SHA-256 of a whole key, in hex: what the registry stores."""
    return hashlib.sha256(token.encode()).hexdigest()


def key_id(token: str) -> str | None:
    """The id part of ``mp_<id>_<secret>``, or None for anything not shaped like a key."""
    if not token.startswith(PREFIX) or len(token) < len(PREFIX) + ID_LENGTH + 2:
        return None
    if token[len(PREFIX) + ID_LENGTH] != "_":
        return None
    return token[len(PREFIX) : len(PREFIX) + ID_LENGTH]


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))


def check_scopes(
    scopes: Iterable[str], endpoints: Iterable[str] | None, rate_limit: float | None
) -> tuple[frozenset[str], tuple[str, ...] | None]:
    """Validated scopes and endpoints for a new key (InvalidInput saying what to change)."""
    chosen = frozenset(scopes)
    if not chosen:
        raise InvalidInput(
            "a key needs at least one scope",
            hint=f"give --scope one or more times: {', '.join(SCOPES)}",
        )
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        raise InvalidInput(
            f"unknown scope {', '.join(map(repr, unknown))}",
            hint=f"scopes are {', '.join(SCOPES)} (admin implies the others)",
        )
    limited = None if endpoints is None else tuple(dict.fromkeys(endpoints))
    if limited is not None:
        if not limited:
            raise InvalidInput(
                "the endpoint list is empty", hint="name at least one endpoint, or none at all"
            )
        if "predict" not in chosen or "admin" in chosen:
            raise InvalidInput(
                "endpoints limit the predict scope, and this key "
                + ("has admin, which covers every endpoint" if "admin" in chosen else "has none"),
                hint="use --scope predict (without admin) with --endpoint",
            )
        for endpoint in limited:
            check_name("endpoint", endpoint)
    if rate_limit is not None and not rate_limit > 0:
        raise InvalidInput(
            f"rate limit {rate_limit} is not a positive number of requests per second",
            hint="give a number above 0, or no rate for no limit of the key's own",
        )
    return chosen, limited


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        key=ApiKey(
            id=row.id,
            name=row.name,
            scopes=frozenset(row.scopes),
            endpoints=tuple(row.endpoints) if row.endpoints is not None else None,
            rate_limit=row.rate_limit,
        ),
        created_at=utc(row.created_at),
        created_by=row.created_by,
        revoked_at=utc(row.revoked_at),
        revoked_by=row.revoked_by,
    )


class KeyStore:
    """The ``api_keys`` table, on the registry's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        name: str,
        *,
        scopes: Iterable[str],
        endpoints: Iterable[str] | None = None,
        rate_limit: float | None = None,
        actor: str | None = None,
    ) -> CreatedKey:
        """A new key; its ``token`` is returned here once and kept nowhere.

        Conflict when an active key already has ``name`` (revoke it first, or pick
        another name).
        """
        check_name("key", name)
        chosen, limited = check_scopes(scopes, endpoints, rate_limit)
        for _ in range(5):  # a clash of random ids is rare; try again with a new one
            key = ApiKey(_new_id(), name, chosen, limited, rate_limit)
            token = f"{PREFIX}{key.id}_{secrets.token_urlsafe(32)}"
            record = KeyRecord(key=key, created_at=now(), created_by=actor)
            try:
                self._insert(record, token)
            except sa.exc.IntegrityError as exc:
                if self._active_named(name) is not None:
                    raise Conflict(
                        f"an active key is already named {name!r}",
                        hint=f"revoke it first (`modelport keys revoke {name}`) "
                        "or choose another name",
                    ) from exc
                continue
            return CreatedKey(record, token)
        raise Conflict("could not find a free key id after 5 tries", hint="try again")

    def _insert(self, record: KeyRecord, token: str) -> None:
        key = record.key
        with self.engine.begin() as conn:
            conn.execute(
                _TABLE.insert().values(
                    id=key.id,
                    name=key.name,
                    token_sha256=token_hash(token),
                    scopes=sorted(key.scopes, key=SCOPES.index),
                    endpoints=list(key.endpoints) if key.endpoints is not None else None,
                    rate_limit=key.rate_limit,
                    created_at=record.created_at,
                    created_by=record.created_by,
                )
            )

    def _active_named(self, name: str) -> KeyRecord | None:
        query = sa.select(_TABLE).where(_TABLE.c.name == name, _TABLE.c.revoked_at.is_(None))
        with self.engine.begin() as conn:
            row = conn.execute(query).first()
        return _record(row) if row is not None else None

    def list(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        """Every key, oldest first (only the active ones with ``include_revoked=False``)."""
        query = sa.select(_TABLE).order_by(_TABLE.c.created_at, _TABLE.c.id)
        if not include_revoked:
            query = query.where(_TABLE.c.revoked_at.is_(None))
        with self.engine.begin() as conn:
            return [_record(row) for row in conn.execute(query)]

    def get(self, id_or_name: str) -> KeyRecord:
        """The key with this id, else the active key with this name (NotFound if none)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(_TABLE).where(_TABLE.c.id == id_or_name)).first()
            if row is None:
                row = conn.execute(
                    sa.select(_TABLE).where(
                        _TABLE.c.name == id_or_name, _TABLE.c.revoked_at.is_(None)
                    )
                ).first()
        if row is None:
            raise NotFound(
                f"no key has the id {id_or_name!r}, and no active key has that name",
                hint="`modelport keys list` shows every key's id and name",
            )
        return _record(row)

    def revoke(self, id_or_name: str, *, actor: str | None = None) -> KeyRecord:
        """Revoke a key by id or (active) name; a key already revoked stays as it was.

        Servers stop accepting it at their next refresh of the key cache
        (`modelport.serving.auth`), within ``poll_interval_seconds``.
        """
        record = self.get(id_or_name)
        if not record.active:
            return record
        with self.engine.begin() as conn:
            conn.execute(
                _TABLE.update()
                .where(_TABLE.c.id == record.key.id, _TABLE.c.revoked_at.is_(None))
                .values(revoked_at=now(), revoked_by=actor)
            )
        return self.get(record.key.id)

    def active(self) -> dict[str, tuple[bytes, ApiKey]]:
        """Every active key by id, with the SHA-256 digest of the key: what a server
        checks a presented key against."""
        query = sa.select(_TABLE).where(_TABLE.c.revoked_at.is_(None))
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        return {row.id: (bytes.fromhex(row.token_sha256), _record(row).key) for row in rows}
