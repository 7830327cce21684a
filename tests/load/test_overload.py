"""Overload with the real server: a load generator in its own process sends three times
what a slow model can serve, open loop, and every answer must still be clean.

The model sleeps 20 ms per call and takes 2 rows per call, so one worker serves about
100 single-row requests a second; ``bench/openloop.py`` sends 300 a second for 3 s. With
at most 4 requests queued, the rest are shed: a 503 with ``Retry-After`` and a JSON
body, never another 5xx, never a dropped connection, and the health probe answers
throughout. The figures are printed, not asserted (the machine is shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from modelport.client import Client
from modelport.registry import ServingOptions
from modelport.settings import Settings
from tests.integration.conftest import LiveServer, start_server, stop_server

OPENLOOP = Path(__file__).resolve().parents[2] / "bench" / "openloop.py"
SLOW = """
import time


class Model:
    def load(self, path):
        pass

    def predict(self, frame):
        time.sleep(0.02)
        return frame["a"] * 2
"""
RATE = 300.0


@pytest.fixture
def slow_server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    client = Client(settings)
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "model.py").write_text(SLOW)
    sample = pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 0.0]})
    client.register_model("slow", folder, flavor="custom", trust=True, sample_input=sample)
    client.deploy("slow", "models:/slow/1", serving=ServingOptions(max_batch_size=2, max_queue=4))
    client.close()
    env = os.environ | {"MODELPORT_HOME": str(settings.home), "MODELPORT_WORKERS": "1"}
    server = start_server(env, tmp_path / "server.log")
    yield server
    stop_server(server)


def test_three_times_the_sustainable_rate_is_shed_cleanly(
    slow_server: LiveServer, tmp_path: Path
) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"dataframe_records": [{"a": 1.5, "b": 0.0}]}))
    argv = [sys.executable, str(OPENLOOP), "--port", str(slow_server.port)]
    argv += ["--path", "/v1/endpoints/slow/predict", "--body", str(body)]
    argv += ["--rate", str(RATE), "--duration", "3", "--warmup", "0.5"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    print("\noverload at", RATE, "req/s:", json.dumps(figures, indent=1))
    assert figures["connection_errors"] == 0 and figures["unsent"] == 0, figures
    assert figures["unclean"] == 0, figures["unclean_examples"]
    assert set(figures["codes"]) == {"200", "503 overloaded"}, figures["codes"]
    assert figures["ok"]["n"] > 0 and figures["shed"]["n"] > 0
    assert figures["answered"] == figures["ok"]["n"] + figures["shed"]["n"]
    assert figures["health"]["n"] > 0 and figures["health_failures"] == 0
