"""HTTPS: `modelport serve --tls-cert --tls-key` with one worker and with forked workers
(uvicorn wraps the inherited socket), and clear errors for a bad pair."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from modelport.client import Client
from modelport.errors import InvalidInput
from modelport.serving.server import check_tls
from modelport.settings import Settings
from tests.integration.conftest import MODELPORT, free_port

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def serve(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = os.environ | {"MODELPORT_HOME": str(settings.home), "MODELPORT_WORKERS": "1"}
    command = [*MODELPORT, "serve", "--host", "127.0.0.1", "--log-level", "warning", *args]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(process: subprocess.Popen[bytes], url: str, cert: Path, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if (
                httpx.get(f"{url}/health/ready", verify=trusting(cert), timeout=2).status_code
                == 200
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready:\n{log.read_text()}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_https_with_a_self_signed_certificate(
    settings: Settings, deployed_clf: Client, tmp_path: Path, workers: str
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    args = ("--port", str(port), "--workers", workers, "--tls-cert", str(cert))
    process = serve(settings, log, *args, "--tls-key", str(key))
    try:
        wait_ready(process, url, cert, log)
        body = {"dataframe_records": [ROW]}
        for _ in range(4):  # fresh connections: each worker's TLS, whichever answers
            answer = httpx.post(
                f"{url}/v1/endpoints/clf/predict", json=body, verify=trusting(cert), timeout=10
            )
            assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/health/live", timeout=5)  # the system's CAs do not know it
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5)  # plain HTTP
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_serve(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "MODELPORT_HOME": str(settings.home),
        "MODELPORT_WORKERS": "1",
        "COLUMNS": "2000",  # the console wraps at its width, long paths included
    }
    command = [*MODELPORT, "serve", "--port", str(free_port()), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    done.stderr = " ".join(done.stderr.split())  # as one line, however the console wrapped it
    return done


def test_a_certificate_without_its_key_is_refused(settings: Settings, tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    done = run_serve(settings, tmp_path, "--tls-cert", str(cert))
    assert done.returncode != 0
    assert "TLS certificate is set but not its key" in done.stderr
    assert "--tls-key" in done.stderr


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    missing = tmp_path / "nope.pem"
    with pytest.raises(InvalidInput, match=f"TLS key file '{missing}' does not exist"):
        check_tls(Settings(tls_certfile=cert, tls_keyfile=missing))


def test_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    cert, _ = self_signed(tmp_path / "one")
    _, other_key = self_signed(tmp_path / "two")
    with pytest.raises(InvalidInput) as caught:
        check_tls(Settings(tls_certfile=cert, tls_keyfile=other_key))
    assert f"cannot use TLS certificate '{cert}' with key '{other_key}'" in caught.value.message
    assert "KEY_VALUES_MISMATCH" in caught.value.message
    assert caught.value.hint is not None and "modulus" in caught.value.hint


def test_settings_want_both_files_or_neither(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tls_keyfile is set but tls_certfile is not"):
        Settings(tls_keyfile=tmp_path / "key.pem")
