"""The API key store on SQLite and PostgreSQL: create, list, get, revoke, the active set,
names held by one active key, and checks that say what to fix."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry.keys import ApiKey, KeyStore, key_id, token_hash
from modelport.registry.store import Registry


@pytest.fixture
def store(registry_url: str) -> KeyStore:
    return KeyStore(Registry(registry_url).engine)


def test_create_list_get_revoke(store: KeyStore) -> None:
    created = store.create(
        "checkout", scopes=["predict"], endpoints=["fraud", "churn"], rate_limit=50, actor="ana"
    )
    token = created.token
    assert token.startswith(f"mp_{created.record.key.id}_") and len(token) > 50
    assert key_id(token) == created.record.key.id
    assert created.record.key == ApiKey(
        created.record.key.id, "checkout", frozenset({"predict"}), ("fraud", "churn"), 50.0
    )
    assert created.to_dict()["key"] == token and "key" not in created.record.to_dict()
    store.create("ops", scopes=["admin", "read"])
    assert [r.key.name for r in store.list()] == ["checkout", "ops"]
    assert store.get("checkout") == store.get(created.record.key.id)
    assert store.get("checkout").created_by == "ana"

    revoked = store.revoke("checkout", actor="bo")
    assert not revoked.active and revoked.revoked_by == "bo"
    assert store.revoke(created.record.key.id) == revoked  # again: unchanged
    assert [r.key.name for r in store.list(include_revoked=False)] == ["ops"]
    with pytest.raises(NotFound, match="no active key has that name"):
        store.get("checkout")
    assert store.get(created.record.key.id) == revoked


def test_the_active_set_holds_hashes_of_active_keys_only(store: KeyStore) -> None:
    kept = store.create("kept", scopes=["read"])
    gone = store.create("gone", scopes=["read"])
    store.revoke("gone")
    active = store.active()
    assert list(active) == [kept.record.key.id]
    digest, key = active[kept.record.key.id]
    assert digest == hashlib.sha256(kept.token.encode()).digest()
    assert digest.hex() == token_hash(kept.token) and key == kept.record.key
    assert gone.record.key.id not in active


def test_a_name_is_held_by_one_active_key(store: KeyStore) -> None:
    first = store.create("prometheus", scopes=["read"])
    with pytest.raises(Conflict, match="already named 'prometheus'") as caught:
        store.create("prometheus", scopes=["read"])
    assert caught.value.hint is not None and "keys revoke prometheus" in caught.value.hint
    store.revoke("prometheus")
    second = store.create("prometheus", scopes=["read"])  # a rotation keeps the name
    assert second.record.key.id != first.record.key.id
    assert [r.active for r in store.list()] == [False, True]


@pytest.mark.parametrize(
    ("scopes", "endpoints", "rate", "message"),
    [
        ([], None, None, "at least one scope"),
        (["root"], None, None, "unknown scope 'root'"),
        (["read"], ["fraud"], None, "this key has none"),
        (["admin", "predict"], ["fraud"], None, "has admin, which covers every endpoint"),
        (["predict"], [], None, "the endpoint list is empty"),
        (["predict"], ["no such"], None, "invalid endpoint name 'no such'"),
        (["predict"], None, -1.0, "rate limit -1.0 is not a positive number"),
    ],
)
def test_bad_keys_are_refused_saying_why(
    tmp_path: Path,
    scopes: list[str],
    endpoints: list[str] | None,
    rate: float | None,
    message: str,
) -> None:
    store = KeyStore(Registry(f"sqlite:///{tmp_path / 'registry.db'}").engine)  # any backend
    with pytest.raises(InvalidInput, match=message):
        store.create("k", scopes=scopes, endpoints=endpoints, rate_limit=rate)
    assert store.list() == []


@pytest.mark.parametrize(
    "token", ["", "mp_", "mp_abcdefgh", "mp_abcdefgh_", "xx_abcdefgh_secret", "mp_abcdefghi_s"]
)
def test_anything_not_shaped_like_a_key_has_no_id(token: str) -> None:
    assert key_id(token) is None


def test_scopes_grant_what_the_table_says() -> None:
    admin = ApiKey("a", "a", frozenset({"admin"}))
    read = ApiKey("r", "r", frozenset({"read"}))
    clf = ApiKey("p", "p", frozenset({"predict"}), ("clf",))
    assert all(admin.grants(s, "any") for s in ("predict", "read", "admin"))
    assert read.grants("read") and not read.grants("predict", "clf") and not read.grants("admin")
    assert clf.grants("predict", "clf") and not clf.grants("predict", "reg")
    assert not clf.grants("read") and not clf.grants("admin")
