"""The dashboard's features and predictions pages in headless Chromium, against a real
server with real traffic.

A pushed feature row shows in the features page's lookup with its values, event time
and age; a stream view's processor shows as not running until its consumer group has
read the stream, then caught up; the predictions page finds a request by its
prediction id, from a search typed and sent with Enter alone, and shows its inputs
(each marked as sent by the caller or looked up in a feature view), output and label.
Screenshots go to the test's tmp folder and docs/images/.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/browser.sh``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelport.client import Client
from modelport.features.streams import RedisStreamSource, connect, publish
from modelport.features.views import Aggregation, Feature, FeatureView, StreamSource
from modelport.settings import Settings
from tests.e2e.test_ui import (
    DOCS_IMAGES,
    SERVER_ENV,
    browser,
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

__all__ = ["browser"]  # the fixture, imported for the tests below

PROFILE = FeatureView(
    name="user_profile",
    entity="user_id",
    features=(Feature("age", "double"), Feature("country", "string")),
    ttl_s=86_400.0,
    owner="risk@example.com",
)
#: clf's column ``d`` is looked up per user: requests send user_id, a, b and c.
RISK = FeatureView(name="risk", entity="user_id", features=(Feature("d", "double"),))
REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def clicks() -> Iterator[FeatureView]:
    """A stream view on a stream of its own (removed afterwards)."""
    stream = f"clicks_{uuid.uuid4().hex[:10]}"
    yield FeatureView(
        name="clicks",
        entity="user_id",
        aggregations=(Aggregation("clicks_1h", "count", None, 3600.0),),
        source=StreamSource(stream=stream, timestamp_field="ts"),
    )
    redis = connect(REDIS_URL)
    redis.delete(stream)
    redis.close()


@pytest.fixture
def served(
    tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame], clicks: FeatureView
) -> Iterator[LiveServer]:
    """clf deployed with the risk view; user_profile and clicks applied; streams on
    Redis; the server started."""
    settings = Settings(home=tmp_path / "home", user="ana")
    client = Client(settings)
    clf, frame = sklearn_classifier
    client.register_model("clf", clf, sample_input=frame)
    for view in (PROFILE, RISK, clicks):
        client.features.apply(view)
    client.deploy(
        "clf", "models:/clf/1", env="production", reason="first release", features=["risk"]
    )
    env = (
        os.environ
        | SERVER_ENV
        | {
            "MODELPORT_HOME": str(settings.home),
            "MODELPORT_STREAM_URL": REDIS_URL,
        }
    )
    server = start_server(env, tmp_path / "server.log")
    try:
        yield server
    finally:
        stop_server(server)
        client.close()


def send_requests(server: LiveServer) -> list[str]:
    """Twenty requests of two rows to clf (d looked up in risk); their prediction ids,
    once logged."""
    rng = np.random.default_rng(3)
    ids: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        pushed = http.post(
            "/v1/features/risk/push",
            json={"rows": [{"user_id": f"u{i}", "d": i / 4} for i in range(4)]},
        )
        assert pushed.status_code == 200, pushed.text
        for i in range(20):
            frame = pd.DataFrame(rng.normal(size=(2, 3)), columns=["a", "b", "c"])
            frame["user_id"] = [f"u{i % 4}", f"u{(i + 1) % 4}"]
            records = list(frame.to_dict(orient="records"))
            reply = http.post("/v1/endpoints/clf/predict", json={"dataframe_records": records})
            assert reply.status_code == 200, reply.text
            ids += reply.json()["prediction_ids"]
        labelled = http.post("/v1/feedback", json={"prediction_id": ids[4], "label": 1})
        assert labelled.status_code == 200, labelled.text
    wait_for(
        lambda: (
            len(httpx.get(f"{server.url}/v1/predictions", params={"limit": 500}).json()["rows"])
            == len(ids)
        ),
        what="the log to hold every row",
    )
    return ids


def check_streams(driver: Any, server: LiveServer, clicks: FeatureView) -> None:
    """The clicks processor: not running (no consumer group), then caught up once a
    consumer of its group has read and acknowledged every event."""
    assert isinstance(clicks.source, StreamSource)
    stream = clicks.source.stream
    row = text(driver, "#streams tbody tr")
    assert "clicks" in row and stream in row and "modelport.clicks" in row
    assert "not running" in row and "modelport stream run clicks" in row
    for i in range(6):
        publish(REDIS_URL, stream, {"user_id": f"u{i}", "ts": 1_700_000_000 + i})
    reader = RedisStreamSource(REDIS_URL, stream, "modelport.clicks", "ui-test")
    try:
        read = reader.read(10, None)
        reader.ack([m.id for m in read])
    finally:
        reader.close()
    driver.refresh()
    rendered_by(driver, "features")
    wait_for(lambda: "caught up" in text(driver, "#streams tbody tr"), what="caught up")
    cells = driver.find_elements("css selector", "#streams tbody tr td")
    assert [c.text for c in cells[5:7]] == ["0", "0"]  # events behind, pending
    assert "every event processed" in cells[4].text and cells[7].text and cells[8].text


def check_features(driver: Any, server: LiveServer, shots: Path) -> Path:
    from selenium.webdriver.support.select import Select

    pushed = httpx.post(
        f"{server.url}/v1/features/user_profile/push",
        json={"rows": [{"user_id": "u42", "age": 31.5, "country": "PT"}]},
    )
    assert pushed.status_code == 200, pushed.text
    open_page(driver, f"{server.url}/ui/#/features", "features")
    listing = text(driver, "main table")
    assert "user_profile" in listing and "user_id" in listing
    assert "age (double), country (string)" in listing and "1d 0h" in listing
    assert "pushed (no source)" in listing
    assert (
        driver.find_element("css selector", "a[data-nav='features']").get_attribute("aria-current")
        == "page"
    )
    # The lookup answers for the pushed key, and names a missing one.
    Select(driver.find_element("id", "lookup-view")).select_by_value("user_profile")
    driver.find_element("id", "lookup-key").send_keys("u404\n")
    wait_for(lambda: "'u404'" in text(driver, "#lookup-result"), what="the missing key")
    key = driver.find_element("id", "lookup-key")
    key.clear()
    key.send_keys("u42")
    driver.find_element("id", "lookup-go").click()
    wait_for(lambda: "31.5" in text(driver, "#lookup-result"), what="the looked-up values")
    found = text(driver, "#lookup-result")
    assert "PT" in found and "fresh" in found and "Event time" in found and "s" in found
    shot = screenshot(driver, shots / "features.png")
    # A shared link opens with its lookup done.
    before = renders(driver)
    driver.get(f"{server.url}/ui/#/features?view=user_profile&key=u42")
    rendered_by(driver, "features", after=before)
    assert "31.5" in text(driver, "#lookup-result")
    return shot


def check_predictions(driver: Any, server: LiveServer, ids: list[str], shots: Path) -> Path:
    from selenium.webdriver.common.keys import Keys

    open_page(driver, f"{server.url}/ui/#/predictions", "predictions")
    assert "40 row(s)" in text(driver, "main")
    assert len(driver.find_elements("css selector", "main .results tbody tr")) == 40
    # The keyboard alone: focus the id field, type an id, Enter searches.
    wanted = ids[4]
    driver.find_element("id", "search-id").click()
    before = renders(driver)
    press(driver, wanted, Keys.ENTER)
    rendered_by(driver, "predictions", after=before)
    assert f"id={wanted}" in driver.current_url
    detail = text(driver, f"section[data-prediction='{wanted}']")
    logged = httpx.get(f"{server.url}/v1/predictions", params={"id": wanted}).json()["rows"][0]
    assert "clf-v1" in detail and "clf" in detail and "ms" in detail
    for name in ("a", "b", "c", "d"):
        assert name in detail
    assert f"{logged['inputs']['a']:.4f}"[:5] in detail
    assert logged["outputs"] and all(name in detail for name in logged["outputs"])
    assert "Label" in detail and "1 given" in detail
    # Where each input came from: d looked up in risk, the rest sent by the caller.
    inputs = driver.find_element("css selector", f"section[data-prediction='{wanted}'] table")
    origins = {
        r.find_element("css selector", "td code").text: r.find_element(
            "css selector", "[data-origin]"
        ).text
        for r in inputs.find_elements("css selector", "tbody tr")
    }
    assert "d" in logged["inputs"] and logged["features"] == {"d": "risk"}
    assert origins == {k: "feature risk" if k == "d" else "sent" for k in logged["inputs"]}
    assert "looked up in feature views" in inputs.text
    assert len(driver.find_elements("css selector", "main .results tbody tr")) == 1
    shot = screenshot(driver, shots / "predictions.png")
    # A bad time is the server's message, not a broken page.
    driver.get(f"{server.url}/ui/#/predictions?until=yesterday")
    wait_for(
        lambda: "neither a duration nor a timestamp" in text(driver, "main"),
        what="the bad time's message",
    )
    return shot


def test_features_and_predictions_pages(
    served: LiveServer, browser: Any, tmp_path: Path, clicks: FeatureView
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    ids = send_requests(served)
    check_features(browser, served, shots)
    check_streams(browser, served, clicks)
    final = {
        "ui-features.png": screenshot(browser, shots / "features-streams.png"),
        "ui-predictions.png": check_predictions(browser, served, ids, shots),
    }
    # Only the two failures the test asked for: the missing key and the bad time.
    errors = [e for e in console_errors(browser) if "u404" not in e and "yesterday" not in e]
    assert errors == [], json.dumps(errors, indent=1)
    DOCS_IMAGES.mkdir(exist_ok=True)
    for name, shot in final.items():
        shutil.copyfile(shot, DOCS_IMAGES / name)
