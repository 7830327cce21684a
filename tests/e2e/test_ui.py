"""The dashboard (/ui/) in headless Chromium, against a real server with real traffic.

One server, one browser, the pages in turn: the overview lists every endpoint with its
figures; the endpoint page draws its charts (canvas, axes, legends) and its history; its
buttons, after a confirmation, pause (by keyboard alone), promote and roll back the
rollout, checked through the API; the incidents page shows the incident the server's
own alert rules opened, with its diagnosis. Screenshots of each page are kept in the
test's tmp folder, and the final ones copied to docs/images/ for the README.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/browser.sh`` installs
them).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from modelport.client import Client
from modelport.config import apply, plan_file
from modelport.settings import Settings
from tests.integration.conftest import LiveServer, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMAGES = ROOT / "docs" / "images"
#: The server watches every second over the last five minutes, and drives rollouts.
SERVER_ENV = {
    "MODELPORT_WORKERS": "1",
    "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
    "MODELPORT_LOG_FLUSH_SECONDS": "0.2",
    "MODELPORT_MONITOR_INTERVAL_SECONDS": "1",
    "MODELPORT_MONITOR_WINDOW": "5m",
    "MODELPORT_ROLLOUT_INTERVAL_SECONDS": "0.5",
    "MODELPORT_USER": "ana",
}
ALERTING = {
    "alerting": {
        "route": {"receiver": "log", "group_wait": "0s"},
        "default_rules": False,
        "rules": [
            {
                "name": "HighErrorRate",
                "signal": "error_rate",
                "threshold": 0.03,
                "window": "5m",
                "min_samples": 50,
                "severity": "critical",
                "endpoints": ["clf"],
            }
        ],
    }
}
TRAFFIC_S = 16.0
WIDTH = 1400


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# -- the browser -------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by chromedriver, both Debian's; nothing is downloaded."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromedriver are not installed: run scripts/browser.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        f"--window-size={WIDTH},1000",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, url: str, page: str) -> None:
    """Navigate and wait until the page has drawn its data."""
    driver.get(url)
    rendered_by(driver, page)


def rendered_by(driver: Any, page: str, after: int = 0) -> int:
    """Wait for ``page`` to finish a draw later than draw number ``after``."""

    def done() -> int | None:
        failed = driver.execute_script("return document.documentElement.dataset.failed || null")
        assert failed is None, driver.find_element("id", "main").text
        marks = driver.execute_script(
            "const d = document.documentElement.dataset; return [d.rendered, d.renders];"
        )
        if marks[0] == page and marks[1] and int(marks[1]) > after:
            return int(marks[1])
        return None

    found: int = wait_for(done, what=f"the {page} page to render")
    return found


def renders(driver: Any) -> int:
    return int(driver.execute_script("return document.documentElement.dataset.renders || 0"))


def text(driver: Any, css: str) -> str:
    return str(driver.find_element("css selector", css).text)


def screenshot(driver: Any, path: Path) -> Path:
    """The whole page, however long, as a PNG."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(WIDTH, min(max(height, 600), 6000))
    time.sleep(0.3)  # charts follow the new size
    driver.save_screenshot(str(path))
    driver.set_window_size(WIDTH, 1000)
    return path


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# -- the server and its traffic ----------------------------------------------------------


def rows(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    return list(frame.to_dict(orient="records"))


def send_traffic(server: LiveServer, seconds: float) -> dict[str, int]:
    """Requests of one to six rows at a rate that rises and falls; about one clf request
    in fourteen is malformed (a text amount, or broken JSON), as real clients send."""
    rng = np.random.default_rng(7)
    sent = {"clf": 0, "reg": 0, "failed": 0}
    start = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        i = 0
        while (elapsed := time.monotonic() - start) < seconds:
            i += 1
            body: Any = {"dataframe_records": rows(rng, int(rng.integers(1, 7)))}
            if i % 17 == 0:
                body["dataframe_records"][0]["a"] = "12,50"
            reply = (
                http.post("/v1/endpoints/clf/predict", content=b'{"dataframe_records": [')
                if i % 41 == 0
                else http.post("/v1/endpoints/clf/predict", json=body)
            )
            sent["clf"] += 1
            sent["failed"] += reply.status_code != 200
            if i % 3 == 0:
                http.post("/v1/endpoints/reg/predict", json={"dataframe_records": rows(rng, 2)})
                sent["reg"] += 1
            time.sleep(0.012 + 0.05 * (1 + math.sin(elapsed / seconds * 4 * math.pi)) / 2)
    return sent


@pytest.fixture
def site(
    tmp_path: Path,
    sklearn_classifier: tuple[Path, pd.DataFrame],
    sklearn_regressor: tuple[Path, pd.DataFrame],
) -> Iterator[tuple[LiveServer, Client]]:
    """clf v1 -> v2 deployed, a rollout to v3 at 25%, reg beside it, clf in staging too,
    an error-rate rule; the server started."""
    settings = Settings(home=tmp_path / "home", user="ana")
    client = Client(settings)
    clf, frame = sklearn_classifier
    reg, reg_frame = sklearn_regressor
    client.registry.ensure_model("clf", owner="ana@example.com", team="risk")
    for _ in range(3):
        client.register_model("clf", clf, sample_input=frame, metrics={"accuracy": 0.97})
    client.register_model("reg", reg, owner="li@example.com", sample_input=reg_frame)
    client.deploy("clf", "models:/clf/1", env="production", reason="first release")
    client.deploy("clf", "models:/clf/2", env="production", reason="retrained on November data")
    client.deploy("reg", "models:/reg/1", env="production", reason="first release")
    client.deploy("clf", "models:/clf/3", env="staging", reason="candidate")
    client.rollouts("production").start(
        "clf", "models:/clf/3", steps=[25, 50, 100], interval="1h", reason="more features"
    )
    config = tmp_path / "modelport.yaml"
    config.write_text(yaml.safe_dump(ALERTING))
    apply(client, plan_file(client, config))
    env = os.environ | SERVER_ENV | {"MODELPORT_HOME": str(settings.home)}
    server = start_server(env, tmp_path / "server.log")
    try:
        yield server, client
    finally:
        stop_server(server)
        client.close()


# -- the pages --------------------------------------------------------------------------


def check_overview(driver: Any, server: LiveServer, shots: Path) -> Path:
    open_page(driver, f"{server.url}/ui/#/?window=1m", "overview")
    production = text(driver, "section[aria-labelledby='env-production']")
    staging = text(driver, "section[aria-labelledby='env-staging']")
    assert "clf/3 25%, clf/2 75%" in production and "reg/1" in production
    assert "clf/3" in staging and "not served here" in staging
    clf = driver.find_element("css selector", "tr[data-row='production/clf']")
    cells = [c.text for c in clf.find_elements("css selector", "th, td")]
    assert cells[0] == "clf" and "ready" in cells[2]
    assert cells[3].endswith("/s") and cells[3] != "0/s", cells  # requests/s
    assert cells[4].endswith("%") and cells[4] != "0%", cells  # error rate
    assert cells[5].endswith("ms") and cells[6].endswith("ms"), cells  # p50, p99
    assert cells[7] == "1 firing", cells
    stats = httpx.get(f"{server.url}/v1/stats", params={"window": "1m"}).json()
    figures = next(e for e in stats["endpoints"] if e["endpoint"] == "clf")
    assert figures["errors"] > 0 and figures["requests"] > 100
    sparklines = clf.find_elements("css selector", "canvas.spark")
    assert len(sparklines) == 3
    assert "requests per second" in (sparklines[0].get_attribute("aria-label") or "")
    shot = screenshot(driver, shots / "overview.png")
    # Auto-refresh redraws the page by itself; then it is turned off for the rest.
    before = renders(driver)
    refresh_every(driver, "5")
    rendered_by(driver, "overview", after=before)
    refresh_every(driver, "0")
    return shot


def refresh_every(driver: Any, seconds: str) -> None:
    from selenium.webdriver.support.select import Select

    Select(driver.find_element("id", "refresh")).select_by_value(seconds)


def check_endpoint(driver: Any, server: LiveServer, shots: Path) -> Path:
    open_page(driver, f"{server.url}/ui/#/endpoints/production/clf?window=1m", "endpoint")
    charts = driver.find_elements("css selector", "figure.chart")
    assert [c.get_attribute("data-chart") for c in charts] == [
        "traffic",
        "latency",
        "errors",
        "rows",
    ]
    for chart in charts:
        assert chart.find_elements("css selector", "canvas"), chart.text
        assert chart.find_elements("css selector", ".u-axis"), "a chart without axes"
    legends = [c.find_element("css selector", ".u-legend").text for c in charts]
    assert "clf-v2" in legends[0] and "clf-v3" in legends[0]
    assert "clf-v2 p99" in legends[1] and "clf-v3 p50" in legends[1]
    assert "signature_mismatch" in legends[2] and "invalid_input" in legends[2]
    assert "requests/s" in charts[0].text and "ms over time" in charts[1].text
    panel = text(driver, "section[aria-labelledby='rollout-title']")
    assert "Rollout 1" in panel and "clf/3" in panel and "running" in panel
    history = text(driver, "ol.timeline")
    assert "retrained on November data" in history and "first release" in history
    variants = text(driver, "section[aria-labelledby='traffic-title'] table")
    assert "clf-v2" in variants and "clf-v3" in variants
    return screenshot(driver, shots / "endpoint.png")


def rollout(server: LiveServer) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{server.url}/v1/rollouts/clf").json()
    return found


def press(driver: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def confirm_dialog_open(driver: Any) -> bool:
    return bool(driver.execute_script("return document.getElementById('confirm').open"))


def check_keyboard_pause(driver: Any, server: LiveServer) -> None:
    """Tab from the top of the page reaches the buttons; Enter opens the confirmation,
    Escape cancels it, and Tab, Enter confirms."""
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    reached = []
    for _ in range(40):
        press(driver, Keys.TAB)
        focused = driver.execute_script("return document.activeElement.id")
        reached.append(focused)
        if focused == "action-pause":
            break
    assert "action-rollback" in reached and reached[-1] == "action-pause", reached
    press(driver, Keys.ENTER)
    wait_for(lambda: confirm_dialog_open(driver), what="the confirmation")
    assert driver.execute_script("return document.activeElement.id") == "confirm-cancel"
    press(driver, Keys.ESCAPE)
    wait_for(lambda: not confirm_dialog_open(driver), what="the dialog to close")
    assert rollout(server)["state"] == "running"  # cancelled: nothing happened
    assert driver.execute_script("return document.activeElement.id") == "action-pause"
    before = renders(driver)
    press(driver, Keys.ENTER)
    wait_for(lambda: confirm_dialog_open(driver), what="the confirmation")
    press(driver, Keys.TAB, Keys.ENTER)
    wait_for(lambda: rollout(server)["state"] == "paused", what="the rollout to pause")
    rendered_by(driver, "endpoint", after=before)
    assert driver.find_elements("id", "action-resume")


def click_and_confirm(driver: Any, button: str, reason: str | None = None) -> str:
    """Click an action, read what the confirmation says, confirm; the dialog's text."""
    before = renders(driver)
    driver.find_element("id", button).click()
    wait_for(lambda: confirm_dialog_open(driver), what="the confirmation")
    said = str(driver.find_element("id", "confirm").text)
    if reason is not None:
        driver.find_element("id", "confirm-reason").send_keys(reason)
    driver.find_element("id", "confirm-ok").click()
    rendered_by(driver, "endpoint", after=before)
    return said


def check_promote_and_rollback(driver: Any, server: LiveServer, shots: Path) -> None:
    said = click_and_confirm(driver, "action-promote")
    assert "50%" in said
    assert wait_for(lambda: rollout(server)["percent"] == 50, what="the next step")
    deployment = httpx.get(f"{server.url}/v1/deployments/production/clf").json()
    assert {(v["version"], v["weight"]) for v in deployment["spec"]["variants"]} == {
        (3, 50.0),
        (2, 50.0),
    }

    said = click_and_confirm(driver, "action-rollback", reason="p99 too high at 50%")
    assert "Rollout 1 is aborted" in said and "clf/2" in said
    deployment = httpx.get(f"{server.url}/v1/deployments/production/clf").json()
    assert [(v["version"], v["weight"]) for v in deployment["spec"]["variants"]] == [(2, 100.0)]
    assert rollout(server)["state"] == "aborted"
    events = httpx.get(f"{server.url}/v1/deployments/production/clf/history").json()["events"]
    assert (events[-1]["action"], events[-1]["reason"]) == ("rollback", "p99 too high at 50%")
    assert "clf rolled back." in text(driver, "main")
    assert "p99 too high at 50%" in text(driver, "ol.timeline")
    assert not driver.find_elements("id", "action-pause")  # no active rollout any more
    screenshot(driver, shots / "endpoint-rolled-back.png")


def check_incidents(driver: Any, server: LiveServer, shots: Path) -> Path:
    open_page(driver, f"{server.url}/ui/#/incidents", "incidents")
    listing = text(driver, "main")
    assert "HighErrorRate on clf" in listing and "firing" in listing
    screenshot(driver, shots / "incidents-list.png")
    before = renders(driver)
    driver.find_element("css selector", "a[data-key^='incident-']").click()
    rendered_by(driver, "incident", after=before)
    page = text(driver, "main")
    for part in ("What changed", "Most drifted columns", "Failing requests", "Notifications"):
        assert part in page, part
    assert "signature_mismatch" in page and "retrained on November data" in page
    assert "modelport deploy clf models:/clf/1 --env production" in page
    charts = driver.find_elements("css selector", "figure.chart")
    assert [c.get_attribute("data-chart") for c in charts] == [
        "signal",
        "around-traffic",
        "around-errors",
    ]
    assert all(c.find_elements("css selector", "canvas") for c in charts)
    assert "error_rate" in charts[0].find_element("css selector", ".u-legend").text
    assert "threshold 0.03" in charts[0].text
    return screenshot(driver, shots / "incident.png")


def check_first_deployment(driver: Any, server: LiveServer) -> None:
    """An endpoint with nothing before it offers no roll back."""
    open_page(driver, f"{server.url}/ui/#/endpoints/production/reg?window=1m", "endpoint")
    assert "Nothing to roll back to" in text(driver, "main")
    assert not driver.find_elements("css selector", "[id^='action-']")
    assert len(driver.find_elements("css selector", "figure.chart canvas")) >= 4


def check_dark_mode(driver: Any, server: LiveServer, shots: Path) -> Path:
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    open_page(driver, f"{server.url}/ui/#/endpoints/production/clf?window=1m", "endpoint")
    background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 20, 25)", background
    return screenshot(driver, shots / "endpoint-dark.png")


def test_dashboard_pages_and_actions(
    site: tuple[LiveServer, Client], browser: Any, tmp_path: Path
) -> None:
    server, _client = site
    shots = tmp_path / "screenshots"
    shots.mkdir()
    traffic: dict[str, Any] = {}
    sender = threading.Thread(target=lambda: traffic.update(send_traffic(server, TRAFFIC_S)))
    sender.start()
    index = httpx.get(f"{server.url}/ui/")
    assert index.headers["cache-control"] == "no-cache"
    assert "content-security-policy" in index.headers
    # Every page's link is in the HTML itself, none added by a script.
    nav = re.findall(r'<a href="#/([a-z]*)" data-nav="([a-z]+)">', index.text)
    assert nav == [
        ("", "overview"),
        ("incidents", "incidents"),
        ("models", "models"),
        ("features", "features"),
        ("predictions", "predictions"),
    ], nav
    sender.join()
    assert traffic["clf"] > 100 and traffic["failed"] > 5, traffic
    wait_for(
        lambda: httpx.get(f"{server.url}/v1/incidents", params={"status": "firing"}).json(),
        what="the HighErrorRate incident",
    )

    final = {
        "ui-overview.png": check_overview(browser, server, shots),
        "ui-endpoint.png": check_endpoint(browser, server, shots),
    }
    check_keyboard_pause(browser, server)
    check_promote_and_rollback(browser, server, shots)
    final["ui-incidents.png"] = check_incidents(browser, server, shots)
    check_first_deployment(browser, server)
    final["ui-endpoint-dark.png"] = check_dark_mode(browser, server, shots)
    errors = console_errors(browser)
    assert errors == [], json.dumps(errors, indent=1)

    DOCS_IMAGES.mkdir(exist_ok=True)
    for name, shot in final.items():
        shutil.copyfile(shot, DOCS_IMAGES / name)
