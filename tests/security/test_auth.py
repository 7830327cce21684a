"""API keys on every route: no key, wrong key, revoked key, wrong scope, endpoint limits,
public routes, and keys hashed at rest. The server runs in process with auth on."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.registry.keys import KeyStore
from modelport.serving.auth import KeyCache, auth_enabled, is_loopback, requirement
from modelport.serving.fastpath import FastPath
from modelport.settings import Settings

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}
PREDICT = {"dataframe_records": [ROW]}
V2 = {
    "inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]
}

Server = Callable[..., TestClient]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- which route needs what --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "needs"),
    [
        ("GET", "/v2/health/live", ("public", None)),
        ("GET", "/v2/health/ready", ("public", None)),
        ("GET", "/health/live", ("public", None)),
        ("GET", "/ui", ("public", None)),
        ("GET", "/ui/static/abc/app.js", ("public", None)),
        ("POST", "/v1/endpoints/clf/predict", ("predict", "clf")),
        ("POST", "/v2/models/clf/infer", ("predict", "clf")),
        ("POST", "/v2/models/clf/versions/3/infer", ("predict", "clf")),
        ("GET", "/v2/models/clf", ("predict", "clf")),
        ("GET", "/v2/models/clf/ready", ("predict", "clf")),
        ("GET", "/v2/models/clf/versions/3", ("predict", "clf")),
        ("GET", "/v2/models/clf/versions/3/ready", ("predict", "clf")),
        ("GET", "/v1/endpoints/clf/predictions/a|b/c", ("predict", "clf")),
        ("GET", "/v1/auth/whoami", ("any", None)),
        ("POST", "/v1/feedback", ("predict", None)),
        ("GET", "/v1/feedback", ("read", None)),
        ("GET", "/v1/keys", ("admin", None)),
        ("DELETE", "/v1/keys/abcd1234", ("admin", None)),
        ("GET", "/v1/endpoints/clf", ("read", None)),
        ("GET", "/v1/endpoints/clf/predict", ("read", None)),
        ("GET", "/v2", ("read", None)),
        ("GET", "/v2/models/clf/versions", ("read", None)),
        ("GET", "/metrics", ("read", None)),
        ("GET", "/openapi.json", ("read", None)),
        ("HEAD", "/docs", ("read", None)),
        ("POST", "/v1/promote", ("admin", None)),
        ("POST", "/v1/rollouts/clf/pause", ("admin", None)),
        ("PUT", "/v1/deployments/production/clf", ("admin", None)),
        ("DELETE", "/v1/models/clf/aliases/champion", ("admin", None)),
        ("POST", "/v1/endpoints/clf/predictions/k", ("admin", None)),
        ("POST", "/v2/models/clf/ready", ("admin", None)),
        ("POST", "/v2/models/clf/versions/infer", ("admin", None)),
        ("POST", "/v1/auth/whoami", ("admin", None)),
        ("POST", "/ui-not-the-dashboard", ("admin", None)),
    ],
)
def test_each_route_needs_its_scope(method: str, path: str, needs: tuple[str, Any]) -> None:
    assert requirement(method, path) == needs


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("server.example.com", False),
    ],
)
def test_auto_turns_auth_on_off_loopback_only(
    settings: Settings, host: str, loopback: bool
) -> None:
    assert is_loopback(host) is loopback
    settings = settings.model_copy(update={"host": host})
    enabled, why = auth_enabled(settings)
    assert enabled is not loopback and host in why and "auto" in why
    for forced in ("on", "off"):
        enabled, why = auth_enabled(settings.model_copy(update={"auth": forced}))
        assert enabled is (forced == "on") and why == f"MODELPORT_AUTH={forced}"


def test_loopback_servers_need_no_key_and_say_so(
    make_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="modelport.serving.auth"):
        server = make_server(auth="auto", host="127.0.0.1")
    assert "auth is off" in caplog.text and "loopback" in caplog.text
    assert server.post("/v1/endpoints/clf/predict", json=PREDICT).status_code == 200
    assert server.get("/v1/models").status_code == 200
    assert server.get("/v1/auth/whoami").json() == {
        "auth": False,
        "id": None,
        "name": None,
        "scopes": ["predict", "read", "admin"],
        "endpoints": None,
    }


def test_auth_off_on_a_public_address_is_a_warning(
    make_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="modelport.serving.auth"):
        server = make_server(auth="off", host="0.0.0.0")
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.message.startswith("auth is off (MODELPORT_AUTH=off)")
    assert server.get("/v1/models").status_code == 200


def test_without_any_key_the_server_starts_warns_and_refuses(
    make_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="modelport.serving.auth"):
        server = make_server(auth="auto", host="0.0.0.0")
    assert "auth is on (MODELPORT_AUTH=auto and 0.0.0.0 is not a loopback" in caplog.text
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "no active API key" in warning.message
    assert "modelport keys create NAME --scope admin" in warning.message
    assert server.get("/v2/health/ready").status_code == 200
    assert server.get("/v1/models").status_code == 401


# -- 401: no key, wrong key, revoked key -------------------------------------------


def test_no_key_is_401_with_a_bearer_challenge(make_server: Server, tokens: dict[str, str]) -> None:
    server = make_server()
    for method, path, body in [
        ("POST", "/v1/endpoints/clf/predict", PREDICT),
        ("POST", "/v2/models/clf/infer", V2),
        ("GET", "/v2/models/clf", None),
        ("GET", "/v1/models", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("POST", "/v1/promote", {"endpoint": "clf"}),
        ("GET", "/v1/auth/whoami", None),
    ]:
        answer = server.request(method, path, json=body)
        assert answer.status_code == 401, (method, path)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["code"] == "unauthenticated"
        assert "needs an API key" in answer.json()["error"]
        assert "Authorization: Bearer" in answer.json()["hint"]


def test_wrong_keys_are_401(make_server: Server, tokens: dict[str, str]) -> None:
    server = make_server()
    admin = tokens["admin"]
    wrong_secret = admin[:-4] + ("aaaa" if not admin.endswith("aaaa") else "bbbb")
    unknown_id = "mp_zzzzzzzz_" + admin.split("_", 2)[2]
    for token in ("nonsense", wrong_secret, unknown_id, admin + "x", "mp_", admin[:12]):
        for headers in (bearer(token), {"x-api-key": token}):
            answer = server.get("/v1/models", headers=headers)
            assert answer.status_code == 401, token
            assert answer.json()["error"].startswith("the API key is unknown or revoked (")
            assert "`modelport keys list` shows the active keys" in answer.json()["hint"]
    for headers in ({"authorization": f"Basic {admin}"}, {"authorization": "Bearer "}):
        assert server.get("/v1/models", headers=headers).status_code == 401
    assert server.get("/v1/models", headers={"authorization": f"bearer {admin}"}).status_code == 200
    assert server.get("/v1/models", headers={"x-api-key": admin}).status_code == 200
    both = {"authorization": "Basic dXNlcjpwdw==", "x-api-key": admin}
    assert server.get("/v1/models", headers=both).status_code == 200


def test_a_revoked_key_is_refused_within_the_poll_interval(
    make_server: Server, deployed: Client, tokens: dict[str, str]
) -> None:
    server = make_server()
    app = bearer(tokens["predict"])
    assert server.post("/v1/endpoints/clf/predict", json=PREDICT, headers=app).status_code == 200
    deployed.keys.revoke("app", actor="ana")

    def refused() -> bool:
        answer = server.post("/v1/endpoints/clf/predict", json=PREDICT, headers=app)
        return answer.status_code == 401

    wait_for(refused, "the revoked key to be refused")
    assert server.get("/v1/models", headers=bearer(tokens["read"])).status_code == 200
    created = deployed.keys.create("app", scopes=["predict"])  # the name is free again
    wait_for(
        lambda: (
            server.post(
                "/v1/endpoints/clf/predict", json=PREDICT, headers=bearer(created.token)
            ).status_code
            == 200
        ),
        "the new key to be accepted",
    )


# -- routes open to all ------------------------------------------------------------


def test_health_and_the_dashboards_files_need_no_key(
    make_server: Server, tokens: dict[str, str]
) -> None:
    server = make_server()
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").status_code == 200
    assert server.get("/health/live").json() == {"live": True}
    assert server.get("/health/ready").status_code == 200
    page = server.get("/ui/")
    assert page.status_code == 200 and "<html" in page.text
    assert server.get("/ui/static/auth.js").status_code == 200
    assert server.get("/ui", follow_redirects=False).status_code == 307


# -- 403: a key whose scopes do not cover the route ---------------------------------


def test_predict_keys_cannot_reach_control_routes(
    make_server: Server, tokens: dict[str, str]
) -> None:
    server = make_server()
    app = bearer(tokens["predict"])
    assert server.post("/v1/endpoints/clf/predict", json=PREDICT, headers=app).status_code == 200
    assert server.post("/v2/models/reg/infer", json=V2, headers=app).status_code == 200
    assert server.get("/v2/models/clf", headers=app).status_code == 200
    assert server.get("/v2/models/clf/ready", headers=app).status_code == 200
    # the application that predicts sends the labels: the body is checked, not the key
    assert server.post("/v1/feedback", json={}, headers=app).status_code == 400
    for method, path, scope in [
        ("GET", "/v1/models", "read"),
        ("GET", "/v1/endpoints", "read"),
        ("GET", "/metrics", "read"),
        ("GET", "/docs", "read"),
        ("POST", "/v1/promote", "admin"),
        ("PUT", "/v1/deployments/production/clf", "admin"),
        ("DELETE", "/v1/deployments/production/clf", "admin"),
        ("POST", "/v1/deployments/clf/rollback", "admin"),
        ("GET", "/v1/keys", "admin"),
        ("POST", "/v1/keys", "admin"),
    ]:
        answer = server.request(method, path, headers=app, json={})
        assert answer.status_code == 403, (method, path)
        body = answer.json()
        assert body["code"] == "forbidden"
        assert body["error"].startswith("key 'app' (")
        assert f"lacks the {scope} scope that {method} {path} needs (" in body["error"]
        assert "www-authenticate" not in answer.headers


def test_read_keys_read_but_neither_predict_nor_change(
    make_server: Server, tokens: dict[str, str]
) -> None:
    server = make_server()
    grafana = bearer(tokens["read"])
    for path in ("/v1/models", "/v1/deployments", "/v1/endpoints", "/metrics", "/openapi.json"):
        assert server.get(path, headers=grafana).status_code == 200, path
    assert "modelport_" in server.get("/metrics", headers=grafana).text
    for method, path, body in [
        ("POST", "/v1/endpoints/clf/predict", PREDICT),
        ("POST", "/v2/models/clf/infer", V2),
        ("GET", "/v2/models/clf", None),
        ("GET", "/v1/endpoints/clf/predictions/7", None),
        ("POST", "/v1/rollouts/clf/pause", None),
        ("POST", "/v1/deployments/clf/rollback", {}),
        ("DELETE", "/v1/models/clf/aliases/champion", None),
    ]:
        answer = server.request(method, path, json=body, headers=grafana)
        assert answer.status_code == 403, (method, path)
        assert "lacks the" in answer.json()["error"]


def test_a_key_limited_to_one_endpoint_is_refused_on_another(
    make_server: Server, tokens: dict[str, str]
) -> None:
    server = make_server()
    clf_only = bearer(tokens["clf"])
    assert (
        server.post("/v1/endpoints/clf/predict", json=PREDICT, headers=clf_only).status_code == 200
    )
    assert server.post("/v2/models/clf/infer", json=V2, headers=clf_only).status_code == 200
    for method, path, body in [
        ("POST", "/v1/endpoints/reg/predict", PREDICT),
        ("POST", "/v2/models/reg/infer", V2),
        ("POST", "/v2/models/reg/versions/1/infer", V2),
        ("GET", "/v2/models/reg", None),
        ("GET", "/v2/models/reg/ready", None),
        ("GET", "/v1/endpoints/reg/predictions/7", None),
    ]:
        answer = server.request(method, path, json=body, headers=clf_only)
        assert answer.status_code == 403, path
        assert answer.json()["error"].startswith(
            f"key 'clf-only' ({tokens['clf'][3:11]}) may predict only on clf, "
            f"not on 'reg' ({method} {path}) (use a key for that endpoint"
        )
    labels = server.post("/v1/feedback", json={}, headers=clf_only)
    assert labels.status_code == 403 and labels.json()["error"].startswith(
        f"key 'clf-only' ({tokens['clf'][3:11]}) may predict only on clf; "
        "POST /v1/feedback needs a predict key for every endpoint"
    )


def test_admin_keys_do_everything(make_server: Server, tokens: dict[str, str]) -> None:
    server = make_server()
    ops = bearer(tokens["admin"])
    assert server.post("/v1/endpoints/reg/predict", json=PREDICT, headers=ops).status_code == 200
    assert server.get("/v1/models", headers=ops).status_code == 200
    alias = server.put("/v1/models/clf/aliases/champion", json={"version": 1}, headers=ops)
    assert alias.status_code == 200, alias.text
    assert server.delete("/v1/models/clf/aliases/champion", headers=ops).status_code == 204


def test_the_key_travels_in_the_scope(make_server: Server, tokens: dict[str, str]) -> None:
    server = make_server()
    me = server.get("/v1/auth/whoami", headers=bearer(tokens["clf"])).json()
    assert me == {
        "auth": True,
        "id": tokens["clf"][3:11],
        "name": "clf-only",
        "scopes": ["predict"],
        "endpoints": ["clf"],
        "rate_limit": None,
    }
    inner = server.app
    assert not isinstance(inner, FastPath)  # the key check wraps the fast path
    assert isinstance(inner.app, FastPath)  # type: ignore[attr-defined]
    assert inner.cache.lookup(tokens["clf"].encode()).rate_limit is None  # type: ignore[attr-defined]


# -- the key routes ----------------------------------------------------------------


def test_admins_create_list_and_revoke_keys_over_http(
    make_server: Server, tokens: dict[str, str]
) -> None:
    server = make_server()
    ops = bearer(tokens["admin"])
    answer = server.post(
        "/v1/keys",
        json={"name": "scraper", "scopes": ["read"], "rate_limit": 5},
        headers=ops,
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["key"].startswith(f"mp_{created['id']}_")
    assert created["created_by"] == "key:ops" and created["rate_limit"] == 5.0
    listing = server.get("/v1/keys", headers=ops)
    assert [k["name"] for k in listing.json()["keys"]] == [
        "ops", "grafana", "app", "clf-only", "scraper"
    ]  # fmt: skip
    assert all("key" not in k for k in listing.json()["keys"])
    assert not any(token[12:] in listing.text for token in [*tokens.values(), created["key"]])
    wait_for(
        lambda: server.get("/v1/models", headers=bearer(created["key"])).status_code == 200,
        "the new key to be accepted",
    )
    revoked = server.delete(f"/v1/keys/{created['id']}", headers=ops).json()
    assert revoked["revoked_by"] == "key:ops" and revoked["revoked_at"] is not None
    active = server.get("/v1/keys", params={"include_revoked": "false"}, headers=ops).json()
    assert "scraper" not in [k["name"] for k in active["keys"]]
    wait_for(
        lambda: server.get("/v1/models", headers=bearer(created["key"])).status_code == 401,
        "the revoked key to be refused",
    )


def test_bad_key_requests_say_what_to_fix(make_server: Server, tokens: dict[str, str]) -> None:
    server = make_server()
    for body, status, message in [
        ({"name": "x", "scopes": ["write"]}, 400, "unknown scope 'write'"),
        ({"name": "x", "scopes": []}, 400, "scopes"),
        ({"name": "x y", "scopes": ["read"]}, 400, "invalid key name 'x y'"),
        ({"name": "x", "scopes": ["read"], "endpoints": ["clf"]}, 400, "has none"),
        ({"name": "x", "scopes": ["admin"], "endpoints": ["clf"]}, 400, "covers every"),
        ({"name": "x", "scopes": ["read"], "rate_limit": 0}, 400, "rate_limit"),
        ({"name": "ops", "scopes": ["read"]}, 409, "an active key is already named 'ops'"),
    ]:
        answer = server.post("/v1/keys", json=body, headers=bearer(tokens["admin"]))
        assert answer.status_code == status, body
        assert message in answer.json()["error"], body
    answer = server.delete("/v1/keys/nokey123", headers=bearer(tokens["admin"]))
    assert answer.status_code == 404
    assert "no key has the id 'nokey123'" in answer.json()["error"]


# -- at rest -------------------------------------------------------------------------


def test_keys_are_hashed_at_rest(deployed: Client, tokens: dict[str, str]) -> None:
    with deployed.registry.engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]
    assert len(rows) == len(tokens)
    stored = repr(rows)
    for token in tokens.values():
        secret = token.split("_", 2)[2]
        assert token not in stored and secret not in stored
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert [r for r in rows if r["token_sha256"] == digest][0]["id"] == token[3:11]
    files = deployed.settings.home.glob("registry.db*")  # the database and its WAL
    raw = b"".join(path.read_bytes() for path in files)
    assert raw and not any(token.split("_", 2)[2].encode() in raw for token in tokens.values())


# -- the key cache when the registry fails -------------------------------------------


def test_keys_stay_in_force_while_the_registry_cannot_be_read(
    deployed: Client, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cache = KeyCache(KeyStore(deployed.registry.engine), interval=0.02)
    cache.refresh()
    token = tokens["read"].encode()

    def rename(old: str, new: str) -> None:
        with deployed.registry.engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))

    async def outage() -> None:
        cache.start()
        try:
            rename("api_keys", "api_keys_away")
            await wait_async(lambda: "could not reload the API keys" in caplog.text)
            assert cache.lookup(token) is not None  # the last keys loaded
            rename("api_keys_away", "api_keys")
            await wait_async(lambda: "reloaded the API keys again: 4 active" in caplog.text)
        finally:
            await cache.stop()

    with caplog.at_level(logging.WARNING, logger="modelport.serving.auth"):
        asyncio.run(outage())
    assert caplog.text.count("could not reload the API keys") == 1  # once, not per reload
    assert cache.lookup(token) is not None


async def wait_async(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
