"""The dashboard against a server with auth on, in headless Chromium: without a key it
asks for one; a read key shows the pages with the actions hidden; an admin key shows
them; a revoked key is asked for again.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/browser.sh``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from modelport.client import Client
from modelport.settings import Settings
from tests.e2e.test_ui import browser, rendered_by, text, wait_for
from tests.integration.conftest import LiveServer, start_server, stop_server

__all__ = ["browser"]  # the fixture, shared with the dashboard's other tests


@pytest.fixture
def site(
    tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> Iterator[tuple[LiveServer, Client, dict[str, str]]]:
    """clf v1 -> v2 deployed (so it can be rolled back), a read key and an admin key, and
    the server started with ``--auth on``."""
    settings = Settings(home=tmp_path / "home", user="ana")
    client = Client(settings)
    clf, frame = sklearn_classifier
    for _ in range(2):
        client.register_model("clf", clf, sample_input=frame)
    client.deploy("clf", "models:/clf/1", env="production")
    client.deploy("clf", "models:/clf/2", env="production")
    tokens = {
        scope: client.keys.create(f"{scope}-key", scopes=[scope]).token
        for scope in ("read", "admin")
    }
    env = os.environ | {
        "MODELPORT_HOME": str(settings.home),
        "MODELPORT_WORKERS": "1",
        "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
        "MODELPORT_MONITOR_INTERVAL_SECONDS": "0",
    }
    server = start_server(env, tmp_path / "server.log", "--auth", "on")
    try:
        yield server, client, tokens
    finally:
        stop_server(server)
        client.close()


def prompt_open(driver: Any) -> bool:
    return bool(
        driver.execute_script(
            "const d = document.getElementById('key-prompt'); return d !== null && d.open;"
        )
    )


def reloaded(driver: Any, act: Callable[[], None]) -> None:
    """Do ``act``, which reloads the page, and wait until the new page has loaded."""
    driver.execute_script("window.beforeReload = true;")
    act()
    wait_for(
        lambda: driver.execute_script(
            "return !window.beforeReload && document.readyState === 'complete';"
        ),
        what="the page to reload",
    )


def enter_key(driver: Any, token: str, page: str) -> None:
    """Type ``token`` into the open prompt and press Enter: the page reloads with it and
    draws ``page``."""
    wait_for(lambda: prompt_open(driver), what="the key prompt")
    field = driver.find_element("id", "key-input")
    field.clear()
    reloaded(driver, lambda: field.send_keys(token + "\n"))
    rendered_by(driver, page)


def action_buttons(driver: Any) -> dict[str, bool]:
    """Each action button of the endpoint page, and whether it is shown."""
    buttons = driver.find_elements("css selector", "[data-scope='admin']")
    return {b.get_attribute("id"): b.is_displayed() for b in buttons}


def scopes_applied(driver: Any) -> str | None:
    found = driver.execute_script("return document.documentElement.dataset.admin || null")
    return str(found) if found else None


def test_the_dashboard_asks_for_a_key_and_hides_what_it_cannot_do(
    browser: Any, site: tuple[LiveServer, Client, dict[str, str]]
) -> None:
    server, client, tokens = site
    page = f"{server.url}/ui/#/endpoints/production/clf"
    assert httpx.get(f"{server.url}/v1/endpoints").status_code == 401

    browser.get(page)
    wait_for(lambda: prompt_open(browser), what="the key prompt")
    assert "asks for an API key" in text(browser, "#key-prompt-body")
    assert "needs an API key" in text(browser, "#key-prompt-body")

    enter_key(browser, tokens["read"], "endpoint")
    assert not prompt_open(browser)
    wait_for(lambda: scopes_applied(browser) == "no", what="the read key's scopes")
    assert action_buttons(browser) == {"action-rollback": False}
    assert text(browser, "#key-name") == "key read-key (read)"
    assert "admin scope" in (browser.find_element("id", "key-name").get_attribute("title") or "")

    reloaded(browser, browser.find_element("id", "key-forget").click)
    enter_key(browser, tokens["admin"], "endpoint")
    wait_for(lambda: scopes_applied(browser) == "yes", what="the admin key's scopes")
    assert action_buttons(browser) == {"action-rollback": True}
    assert text(browser, "#key-name") == "key admin-key (admin)"

    client.keys.revoke("admin-key")
    admin = {"authorization": f"Bearer {tokens['admin']}"}
    wait_for(
        lambda: httpx.get(f"{server.url}/v1/endpoints", headers=admin).status_code == 401,
        what="the server to refuse the revoked key",
    )
    reloaded(browser, browser.refresh)
    wait_for(lambda: prompt_open(browser), what="the key prompt for a revoked key")
    assert "refused this tab's key" in text(browser, "#key-prompt-body")
    logged = browser.get_log("browser")
    assert all("auth.js" not in e["message"] for e in logged if e["level"] == "SEVERE")
