"""The model and monitoring pages of the dashboard, in headless Chromium, against a real
server with real traffic whose inputs shift halfway through.

The model page lists the versions with their metrics, artifact hashes, aliases and
compiled form, where the model is deployed, and the reference profile with a histogram
per column; the monitoring page draws the drift heatmap from the monitor runs the
server kept, and a cell (clicked, or reached by Tab and pressed with Enter) opens that
column's reference and current histograms overlaid, an output column's too; half the
predictions get a label, and the page charts each version's accuracy over time with
the totals the API computes. Screenshots go to docs/images/.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelport.client import Client
from modelport.settings import Settings
from tests.e2e.test_ui import (
    DOCS_IMAGES,
    SERVER_ENV,
    browser,  # noqa: F401  (a fixture)
    console_errors,
    open_page,
    press,
    rendered_by,
    renders,
    screenshot,
    text,
    wait_for,
)
from tests.integration.conftest import LiveServer, start_server, stop_server

TRAFFIC_S = 7.0


@pytest.fixture
def watched_site(
    tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> Iterator[tuple[LiveServer, Client]]:
    """clf v1 and v2 (v2 @champion) with a training sample, v2 deployed; the server."""
    settings = Settings(home=tmp_path / "home", user="ana")
    client = Client(settings)
    clf, frame = sklearn_classifier
    client.registry.ensure_model("clf", owner="ana@example.com", team="risk")
    client.register_model("clf", clf, sample_input=frame, metrics={"accuracy": 0.95})
    client.register_model("clf", clf, sample_input=frame, metrics={"accuracy": 0.97})
    client.set_alias("clf", "champion", 2)
    client.deploy("clf", "models:/clf@champion", env="production", reason="first release")
    env = os.environ | SERVER_ENV | {"MODELPORT_HOME": str(settings.home)}
    server = start_server(env, tmp_path / "server.log")
    try:
        yield server, client
    finally:
        stop_server(server)
        client.close()


def send_shifting_traffic(server: LiveServer, seconds: float) -> list[str]:
    """Batches of 20 rows; after the first third, column ``a`` moves up by 2.5. The
    prediction ids."""
    rng = np.random.default_rng(3)
    sent: list[str] = []
    start = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        while (elapsed := time.monotonic() - start) < seconds:
            frame = pd.DataFrame(rng.normal(size=(20, 4)), columns=["a", "b", "c", "d"])
            if elapsed > seconds / 3:
                frame["a"] += 2.5
            reply = http.post(
                "/v1/endpoints/clf/predict",
                json={"dataframe_records": list(frame.to_dict(orient="records"))},
            )
            assert reply.status_code == 200, reply.text
            sent += reply.json()["prediction_ids"]
            time.sleep(0.03)
    return sent


def mark(driver: Any, name: str) -> str | None:
    """A data attribute of <html>: ``rendered`` (the page drawn) or ``overlay``."""
    found = driver.execute_script(f"return document.documentElement.dataset.{name} || null")
    return None if found is None else str(found)


def monitor_runs(server: LiveServer) -> list[dict[str, Any]]:
    reply = httpx.get(f"{server.url}/v1/endpoints/clf/monitor/history")
    runs: list[dict[str, Any]] = reply.json()["runs"]
    return runs


def drifted_a(run: dict[str, Any]) -> bool:
    return any(c["column"] == "a" and c["drifted"] for c in run["drift"]["columns"])


def label_half(server: LiveServer, ids: list[str]) -> dict[str, Any]:
    """Labels for every other prediction (0 or 1 at random); the performance the API
    computes from them once the log holds them all."""
    rng = np.random.default_rng(5)
    chosen = ids[::2]
    labels = [int(v) for v in rng.integers(0, 2, len(chosen))]
    reply = httpx.post(
        f"{server.url}/v1/feedback", json={"prediction_ids": chosen, "labels": labels}
    )
    assert reply.json() == {"accepted": len(chosen)}, reply.text

    def performance() -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(
            f"{server.url}/v1/endpoints/clf/monitor/performance", params={"window": "1h"}
        ).json()
        return body

    wait_for(
        lambda: [v["totals"]["n_labelled"] for v in performance()["versions"]] == [len(chosen)],
        what="the labels joined to the logged predictions",
    )
    return performance()


def check_performance(driver: Any, expected: dict[str, Any]) -> None:
    """The chart of accuracy per version, its totals, and the window switched to 1h."""
    from selenium.webdriver.support.select import Select

    section = driver.find_element("id", "performance")
    (clf,) = expected["versions"]
    totals = section.find_element("css selector", "table").text
    assert "clf/2" in totals and "classification" in totals
    assert f"{clf['totals']['n_labelled']:,}" in totals
    accuracy = float(f"{clf['totals']['accuracy']:.3g}")
    assert str(accuracy) in totals, (accuracy, totals)
    figure = section.find_element("css selector", "figure[data-chart='perf-accuracy']")
    assert "Accuracy" in figure.text and "score (0 to 1)" in figure.text
    assert figure.find_elements("css selector", ".chart-area canvas")
    assert "clf/2" in figure.find_element("css selector", ".u-legend").text
    for metric in ("f1", "roc_auc"):
        assert section.find_elements("css selector", f"figure[data-chart='perf-{metric}']")
    assert str(float(f"{clf['totals']['f1']:.3g}")) in totals  # clf has two classes
    before = renders(driver)
    Select(driver.find_element("id", "perf-window")).select_by_value("1h")
    rendered_by(driver, "monitoring", after=before)
    assert "perf=1h" in driver.current_url
    figure = driver.find_element("css selector", "#performance figure[data-chart='perf-accuracy']")
    figure.find_element("css selector", "summary").click()
    cells = [
        c.text for c in figure.find_elements("css selector", "tbody td:nth-child(2)") if c.text
    ]
    expected_1h = [v for v in clf["series"]["accuracy"] if v is not None]
    assert len(cells) - cells.count("–") == len(expected_1h) >= 1, cells


def check_model(driver: Any, server: LiveServer, client: Client, shots: Path) -> Path:
    open_page(driver, f"{server.url}/ui/#/models", "models")
    driver.find_element("css selector", "a[data-key='model-clf']").click()
    wait_for(
        lambda: (
            driver.execute_script("return document.documentElement.dataset.rendered") == "model"
        ),
        what="the model page",
    )
    page = text(driver, "main")
    assert "ana@example.com" in page and "risk" in page
    assert "models:/clf@champion" in page and "v2" in page
    versions = text(driver, "section[aria-labelledby='versions-title'] table")
    assert "accuracy 0.97" in versions and "accuracy 0.95" in versions and "@champion" in versions
    shown = [
        e.get_attribute("data-sha256")
        for e in driver.find_elements("css selector", "[data-sha256]")
    ]
    sha = client.registry.get_version("clf", 2).artifact.sha256
    assert sha in shown and len(sha) == 64
    assert "compiled" in versions
    assert "production/clf" in text(driver, "section[aria-labelledby='deployed-title']")
    profile = driver.find_element("css selector", "section[aria-labelledby='version-title']")
    assert "Reference profile of 200 training rows" in profile.text
    assert len(profile.find_elements("css selector", "svg.hist rect")) >= 4 * 10
    return screenshot(driver, shots / "model.png")


def check_monitoring(driver: Any, server: LiveServer, shots: Path) -> Path:
    from selenium.webdriver.common.keys import Keys

    # From the model page's deployments to the endpoint's monitoring.
    driver.find_element("css selector", "a[href='#/monitoring/production/clf']").click()
    wait_for(
        lambda: (
            driver.execute_script("return document.documentElement.dataset.rendered")
            == "monitoring"
        ),
        what="the monitoring page",
    )
    heat = driver.find_element("css selector", "table.heatmap")
    rows = [r.get_attribute("data-column") for r in heat.find_elements("css selector", "tbody tr")]
    assert rows[:4] == ["a", "b", "c", "d"], rows
    assert "ks p < 0.05" in heat.text or "p <" in heat.text, heat.text
    row_a = heat.find_element("css selector", "tr[data-column='a']")
    drifted = row_a.find_elements("css selector", "td.l3, td.l4")
    assert drifted and drifted[-1].text == "!", row_a.get_attribute("outerHTML")[:500]
    assert heat.find_elements(
        "css selector", "tr[data-column='b'] td.l0, tr[data-column='b'] td.l1"
    )
    quality = text(driver, "section[aria-labelledby='quality-title']")
    assert "out of reference range" in quality and "drift" in quality

    # Keyboard: focus the newest cell of a and press Enter.
    cells = row_a.find_elements("css selector", "button.cell-button")
    driver.execute_script("arguments[0].focus()", cells[-2])
    press(driver, Keys.TAB, Keys.ENTER)
    wait_for(
        lambda: mark(driver, "overlay") == "a",
        what="the histograms of a",
    )
    panel = driver.find_element("id", "overlay")
    assert "Reference and current: a" in panel.text and "drifted" in panel.text
    figure = panel.find_element("css selector", "figure[data-chart='overlay']")
    assert figure.find_elements("css selector", "g.hist-reference rect")
    assert figure.find_elements("css selector", "g.hist-current rect")
    assert "outside its range" in figure.text  # the shifted values past the reference
    shot = screenshot(driver, shots / "monitoring.png")

    # A click on another column's cell opens its histograms instead.
    heat = driver.find_element("css selector", "table.heatmap")
    heat.find_elements("css selector", "tr[data-column='b'] button.cell-button")[-1].click()
    wait_for(
        lambda: mark(driver, "overlay") == "b",
        what="the histograms of b",
    )
    assert "Reference and current: b" in text(driver, "#overlay")

    # An output column is a row too: its cells open the prediction's distribution.
    heat = driver.find_element("css selector", "table.heatmap")
    output = heat.find_element("css selector", "tr[data-column='label']")
    assert "(output)" in output.text
    output.find_elements("css selector", "button.cell-button")[-1].click()
    wait_for(lambda: mark(driver, "overlay") == "label", what="the histograms of label")
    assert "Reference and current: label" in text(driver, "#overlay")
    return shot


def test_model_and_monitoring_pages(
    watched_site: tuple[LiveServer, Client],
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    server, client = watched_site
    shots = tmp_path / "screenshots"
    shots.mkdir()
    ids = send_shifting_traffic(server, TRAFFIC_S)
    assert len(ids) > 500
    expected = label_half(server, ids)
    wait_for(
        lambda: len(monitor_runs(server)) >= 4 and drifted_a(monitor_runs(server)[-1]),
        what="a monitor run that found a drifted",
    )
    final = {
        "ui-model.png": check_model(browser, server, client, shots),
        "ui-monitoring.png": check_monitoring(browser, server, shots),
    }
    check_performance(browser, expected)
    errors = console_errors(browser)
    assert errors == [], json.dumps(errors, indent=1)
    DOCS_IMAGES.mkdir(exist_ok=True)
    for name, shot in final.items():
        shutil.copyfile(shot, DOCS_IMAGES / name)
