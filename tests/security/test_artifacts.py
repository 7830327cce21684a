"""Safe artifacts: hashes checked on every load, trust for code, archives, paths, bodies.

Each code-running artifact here is a pickle whose ``__reduce__`` writes a marker
file: the tests check the marker is never written unless the version is trusted.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelport.artifacts import LocalArtifactStore, sha256_path
from modelport.batch.scoring import Scorer
from modelport.batch.spec import JobSpec
from modelport.cli.main import app as cli_app
from modelport.client import TRUSTED_AT_TAG, Client
from modelport.errors import ArtifactError, InvalidInput, UntrustedArtifact
from modelport.registry.batch import BatchStore
from modelport.runtimes.loading import load_runtime
from modelport.safepaths import check_local_path, check_location, check_url, extract_archive
from modelport.signature import Signature
from modelport.uri import check_name, parse_model_uri

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}
CUSTOM_MODEL = """
class Model:
    def load(self, path):
        self.scale = float((path / "scale.txt").read_text())

    def predict(self, frame):
        return frame["a"] * self.scale
"""


class _Exploit:
    """Unpickling this writes ``marker``: the proof that a pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def malicious_pickle(folder: Path, name: str = "model.pkl") -> tuple[Path, Path]:
    """A pickle that writes a marker when loaded, and the marker's path."""
    marker = folder / f"{name}.ran"
    path = folder / name
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    return path, marker


def custom_folder(parent: Path, name: str = "scaler") -> Path:
    folder = parent / name
    folder.mkdir()
    (folder / "model.py").write_text(CUSTOM_MODEL)
    (folder / "scale.txt").write_text("2.0")
    return folder


def stored(client: Client, uri: str) -> Path:
    version = client.get_version(uri)
    return client.artifacts.local_path(version.artifact)


def tamper(client: Client, uri: str) -> None:
    """Change the stored bytes of a version's artifact and of its compiled form."""
    from modelport.runtimes.loading import compiled_artifact

    version = client.get_version(uri)
    for ref in (version.artifact, compiled_artifact(version)):
        if ref is not None:
            path = client.artifacts.local_path(ref)
            path.write_bytes(path.read_bytes() + b"tampered")


def cli(client: Client, *args: str) -> Any:
    return CliRunner().invoke(
        cli_app,
        ["--home", str(client.settings.home), "--json", *args],
        env={"MODELPORT_USER": "ops"},
    )


# -- 1. hashes, on every load path -------------------------------------------------------


def _assert_names_everything(exc: ArtifactError, uri: str, path: Path, recorded: str) -> None:
    text = str(exc)
    assert uri in text and str(path) in text and recorded in text
    assert "re-register" in text


def test_tampered_file_is_refused_on_every_load_path(
    client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> None:
    path, frame = sklearn_classifier
    mv = client.register_model("clf", path, sample_input=frame)
    target = stored(client, "models:/clf/1")
    target.write_bytes(target.read_bytes() + b"\0")
    actual = sha256_path(target)[0]
    # The Python API, replay and the serving pool all load through load_runtime.
    with pytest.raises(ArtifactError, match="is corrupt") as caught:
        client.load("models:/clf/1")
    _assert_names_everything(caught.value, "models:/clf/1", target, mv.artifact.sha256)
    assert actual in str(caught.value)
    # Batch workers (and each Ray actor) open a Scorer.
    spec = JobSpec(model="models:/clf/1", input="in.parquet", output="out", runtime="native")
    with pytest.raises(ArtifactError, match="is corrupt"):
        Scorer.open(client.settings, spec)


def test_tampered_compiled_form_is_refused(
    client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> None:
    path, frame = sklearn_classifier
    mv = client.register_model("clf", path, sample_input=frame)
    assert mv.compiled is not None and mv.compiled["status"] == "compiled"
    from modelport.runtimes.loading import compiled_artifact

    ref = compiled_artifact(mv)
    assert ref is not None
    client.artifacts.local_path(ref).write_bytes(b"not onnx")
    with pytest.raises(ArtifactError, match=r"models:/clf/1 \(compiled form\)"):
        load_runtime(mv, client.artifacts, kind="compiled")
    load_runtime(mv, client.artifacts, kind="native").unload()


@pytest.mark.parametrize("change", ["edit", "add", "remove", "symlink"])
def test_tampered_folder_is_refused(client: Client, tmp_path: Path, change: str) -> None:
    folder = custom_folder(tmp_path)
    mv = client.register_model(
        "scaler", folder, flavor="custom", trust=True, sample_input=pd.DataFrame({"a": [1.0]})
    )
    target = stored(client, "models:/scaler/1")
    if change == "edit":
        (target / "scale.txt").write_text("3.0")
    elif change == "add":
        (target / "extra.py").write_text("import os\n")
    elif change == "remove":
        (target / "scale.txt").unlink()
    else:
        (target / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ArtifactError, match="is corrupt") as caught:
        client.load("models:/scaler/1")
    assert "models:/scaler/1" in str(caught.value) and str(target) in str(caught.value)
    if change != "symlink":
        assert mv.artifact.sha256 in str(caught.value)


def test_a_stale_bytecode_cache_is_never_run(client: Client, tmp_path: Path) -> None:
    """The folder digest leaves __pycache__ out, so a custom model never reads it."""
    folder = custom_folder(tmp_path)
    client.register_model(
        "scaler", folder, flavor="custom", trust=True, sample_input=pd.DataFrame({"a": [1.0]})
    )
    target = stored(client, "models:/scaler/1")
    cache = target / "__pycache__"
    cache.mkdir(exist_ok=True)
    for tag in ("cpython-311", "cpython-312", "cpython-313"):
        (cache / f"model.{tag}.pyc").write_bytes(b"\0" * 64)
    _, runtime = client.load("models:/scaler/1")
    try:
        assert runtime.predict({"a": pd.Series([1.5]).to_numpy()}).outputs["prediction"][0] == 3.0
    finally:
        runtime.unload()


def _version_of(server: TestClient) -> int:
    answer = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW]})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["version"])


def test_tampered_new_version_fails_to_load_and_the_old_keeps_serving(
    deployed: Client,
    make_server: Callable[..., TestClient],
    sklearn_classifier: tuple[Path, pd.DataFrame],
    tmp_path: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression

    _, frame = sklearn_classifier
    other = tmp_path / "other.skops"
    import skops.io as sio

    sio.dump(LogisticRegression(C=0.3).fit(frame, (frame["a"] > 0).astype(int)), other)
    deployed.register_model("clf", other, sample_input=frame)
    server = make_server(auth="off", poll_interval_seconds=0.05)
    assert _version_of(server) == 1
    tamper(deployed, "models:/clf/2")
    deployed.deploy("clf", "models:/clf/2")
    deadline = time.monotonic() + 20
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = server.get("/v1/endpoints/clf").json()
        if "corrupt" in json.dumps(info):
            break
        time.sleep(0.05)
    assert "corrupt" in json.dumps(info) and "models:/clf/2" in json.dumps(info)
    assert _version_of(server) == 1
    # The loaded version 1 keeps serving even when its file is changed under it...
    tamper(deployed, "models:/clf/1")
    assert _version_of(server) == 1
    # ...but no fresh server loads it.
    fresh = make_server(auth="off")
    answer = fresh.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW]})
    assert answer.status_code >= 400
    assert "is corrupt and was not loaded" in answer.json()["error"]


def test_tampered_reference_sample_is_refused(
    client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> None:
    from modelport.artifacts import ArtifactRef
    from modelport.client import REFERENCE_NAME

    path, frame = sklearn_classifier
    mv = client.register_model("clf", path, sample_input=frame)
    assert mv.sample_sha256 is not None
    ref = ArtifactRef(sha256=mv.sample_sha256, name=REFERENCE_NAME, size=0)
    assert len(client.reference_sample(mv)) == len(frame)
    client.artifacts.local_path(ref).write_bytes(b"PAR1")
    with pytest.raises(ArtifactError, match="the reference sample of models:/clf/1"):
        client.reference_sample(mv)


def test_put_repairs_a_tampered_stored_copy(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    src = tmp_path / "m.bin"
    src.write_bytes(b"original")
    ref = store.put(src)
    store.local_path(ref).write_bytes(b"tampered")
    assert store.put(src) == ref
    store.verify(ref, owner="models:/m/1")


# -- 2. trust for code-running formats ------------------------------------------------------


def test_malicious_pickle_never_runs_without_trust(
    client: Client,
    deployed: Client,
    make_server: Callable[..., TestClient],
    tmp_path: Path,
) -> None:
    for name in ("model.pkl", "model.joblib", "model.pickle"):
        path, marker = malicious_pickle(tmp_path, name)
        with pytest.raises(UntrustedArtifact, match="runs arbitrary Python code"):
            client.register_model("evil", path, sample_input=pd.DataFrame([ROW]))
        result = cli(client, "models", "register", "evil", str(path))
        assert result.exit_code == 3 and "--trust" in result.output
        assert not marker.exists()
    path, marker = malicious_pickle(tmp_path, "evil.pkl")
    # A version whose row says untrusted (e.g. trust revoked): nothing loads it.
    client.registry.create_version(
        "evil",
        artifact=client.artifacts.put(path),
        flavor="sklearn",
        signature=Signature.from_dict({"inputs": [{"name": c, "type": "double"} for c in ROW]}),
    )
    with pytest.raises(UntrustedArtifact, match="is a pickle"):
        client.load("models:/evil/1")
    with pytest.raises(UntrustedArtifact):
        Scorer.open(client.settings, JobSpec(model="models:/evil/1", input="x", output="y"))
    for args in (
        ("models", "show", "evil"),
        ("models", "show", "models:/evil/1"),
        ("models", "versions", "evil"),
        ("models", "list"),
    ):
        assert cli(client, *args).exit_code == 0
    client.deploy("evil", "models:/evil/1")
    server = make_server(auth="off")
    answer = server.post("/v1/endpoints/evil/predict", json={"dataframe_records": [ROW]})
    assert answer.status_code >= 400 and "error" in answer.json()
    assert "is a pickle" in answer.json()["error"]
    info = json.dumps(server.get("/v1/endpoints/evil").json())
    assert "pickle" in info
    # Over HTTP, trust=true is refused unless the server allows it.
    with path.open("rb") as f:
        refused = server.post(
            "/v1/models/evil/versions",
            files={"artifact": ("evil.pkl", f)},
            data={"trust": "true"},
        )
    assert refused.status_code == 403 and "MODELPORT_HTTP_TRUST" in refused.json()["error"]
    with path.open("rb") as f:
        untrusted = server.post("/v1/models/evil/versions", files={"artifact": ("evil.pkl", f)})
    assert untrusted.status_code == 400 and untrusted.json()["code"] == "untrusted_artifact"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "flavor"),
    [
        ("model.skops", None),
        ("model.bin", "sklearn"),
        ("model.json", "xgboost"),
        ("model.txt", "lightgbm"),
        ("model.onnx", None),
    ],
)
def test_a_pickle_under_another_name_is_never_unpickled(
    client: Client, tmp_path: Path, name: str, flavor: str | None
) -> None:
    path, marker = malicious_pickle(tmp_path, name)
    with pytest.raises((ArtifactError, UntrustedArtifact)):
        client.register_model("evil", path, flavor=flavor, sample_input=pd.DataFrame([ROW]))
    with pytest.raises((ArtifactError, UntrustedArtifact)):
        client.register_model(
            "evil", path, flavor=flavor, sample_input=pd.DataFrame([ROW]), trust=True
        )
    assert not marker.exists()


def test_skops_file_with_foreign_types_needs_trust(client: Client, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    model = FunctionTransformer(func=os.getcwd)  # a function outside the safe libraries
    path = tmp_path / "fn.skops"
    sio.dump(model, path)
    with pytest.raises(UntrustedArtifact):
        client.register_model("fn", path, sample_input=pd.DataFrame([ROW]))


def test_trust_is_recorded_with_who_and_when_and_can_be_revoked(
    client: Client, tmp_path: Path
) -> None:
    folder = custom_folder(tmp_path)
    sample = pd.DataFrame({"a": [1.0]})
    with pytest.raises(UntrustedArtifact, match="runs arbitrary Python code"):
        client.register_model("scaler", folder, flavor="custom", sample_input=sample)
    with pytest.raises(InvalidInput, match=TRUSTED_AT_TAG):
        client.register_model(
            "scaler", folder, trust=True, sample_input=sample, tags={TRUSTED_AT_TAG: "x"}
        )
    mv = client.register_model("scaler", folder, flavor="custom", trust=True, sample_input=sample)
    assert mv.trusted and mv.trusted_by == "tester" and TRUSTED_AT_TAG in mv.tags
    revoked = json.loads(cli(client, "models", "trust", "scaler", "1", "--revoke").stdout)
    assert revoked["trusted"] is False and revoked["trusted_by"] is None
    assert TRUSTED_AT_TAG not in revoked["tags"]
    with pytest.raises(UntrustedArtifact, match="custom model"):
        client.load("models:/scaler/1")
    trusted = json.loads(cli(client, "models", "trust", "scaler", "1").stdout)
    assert trusted["trusted"] is True and trusted["trusted_by"] == "ops"
    assert trusted["tags"][TRUSTED_AT_TAG] > mv.tags[TRUSTED_AT_TAG]
    client.load("models:/scaler/1")[1].unload()
    # Trust is never given to changed bytes.
    (stored(client, "models:/scaler/1") / "scale.txt").write_text("9")
    assert cli(client, "models", "trust", "scaler", "1").exit_code == 3


# -- 3. archives and folders ------------------------------------------------------------------


def _tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("../evil.py"), "climbs out"),
        (_member("model/../../evil.py"), "climbs out"),
        (_member("/tmp/evil.py"), "absolute path"),
        (_member("model/passwd", tarfile.SYMTYPE, "/etc/passwd"), "is a link to '/etc/passwd'"),
        (_member("model/up", tarfile.SYMTYPE, "../../.."), "is a link"),
        (_member("model/hard", tarfile.LNKTYPE, "/etc/passwd"), "is a link"),
        (_member("model/fifo", tarfile.FIFOTYPE), "special file"),
        (_member("model/dev", tarfile.CHRTYPE), "special file"),
    ],
)
def test_crafted_tar_is_refused(tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    archive = _tar(tmp_path / "model.tar.gz", [_member("model/model.py"), member])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(InvalidInput, match=message):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize(
    ("name", "mode", "message"),
    [
        ("../evil.py", 0o100644, "climbs out"),
        ("/tmp/evil.py", 0o100644, "absolute path"),
        ("C:/evil.py", 0o100644, "absolute path"),
        ("model\\..\\..\\evil.py", 0o100644, "climbs out"),
        ("model/passwd", 0o120777, "symbolic link"),
    ],
)
def test_crafted_zip_is_refused(tmp_path: Path, name: str, mode: int, message: str) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/model.py", "x = 1\n")
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, "/etc/passwd")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(InvalidInput, match=message):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == []


def test_archive_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/big.bin", b"\0" * 100_000)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(InvalidInput, match="over the limit"):
        extract_archive(archive, dest, max_bytes=10_000)


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_model_folder_registers_from_an_archive(
    client: Client, tmp_path: Path, suffix: str
) -> None:
    folder = custom_folder(tmp_path)
    archive = tmp_path / f"scaler{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for file in folder.iterdir():
                zf.write(file, f"scaler/{file.name}")
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, "scaler")
    mv = client.register_model(
        "scaler", archive, flavor="custom", trust=True, sample_input=pd.DataFrame({"a": [1.0]})
    )
    assert mv.artifact.is_dir and mv.artifact.sha256 == sha256_path(folder)[0]


@pytest.mark.parametrize("link", ["file", "folder", "dangling"])
def test_links_inside_a_model_folder_are_refused(client: Client, tmp_path: Path, link: str) -> None:
    folder = custom_folder(tmp_path)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_text("secret")
    target = {"file": outside / "key", "folder": outside, "dangling": tmp_path / "nowhere"}[link]
    (folder / "data").symlink_to(target)
    with pytest.raises(ArtifactError, match="symbolic link"):
        client.register_model("scaler", folder, flavor="custom", trust=True)
    assert not any(p.name == "key" for p in client.settings.artifacts_path.rglob("*"))


def test_special_files_inside_a_model_folder_are_refused(tmp_path: Path) -> None:
    folder = custom_folder(tmp_path)
    os.mkfifo(folder / "pipe")
    with pytest.raises(ArtifactError, match="not a regular file"):
        LocalArtifactStore(tmp_path / "store").put(folder)


# -- 4. names, URIs, paths and URLs -------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "models:/../3",
        "models:/a..b/1",
        "models:/fraud\0/1",
        "models:/fraud/1\n",
        "models:/a/b/1",
        "models:/fraud/-1",
        "models:/fraud@../x",
        "models:/fr aud/1",
        "models:/fraud%2F../1",
    ],
)
def test_odd_model_uris_are_refused(uri: str) -> None:
    with pytest.raises(InvalidInput, match="invalid model URI"):
        parse_model_uri(uri)


@pytest.mark.parametrize("name", ["..", "a..b", "fraud\n", "fraud\0", "a/b", ".hidden", ""])
def test_odd_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid model name"):
        check_name("model", name)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/latest/", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata service"),
        ("http://169.254.10.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://127.0.0.1:8000/", "loopback"),
        ("http://localhost/", "loopback"),
        ("https://10.1.2.3/", "private"),
        ("http://[::1]/", "loopback"),
        ("http://0.0.0.0/", "private or reserved"),
    ],
)
def test_forbidden_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        check_url(url)


def test_private_urls_need_the_setting_and_metadata_never_passes() -> None:
    assert check_url("http://127.0.0.1:8000/x", allow_private=True)
    assert check_url("s3://bucket/key.parquet") == "s3://bucket/key.parquet"
    with pytest.raises(InvalidInput, match="metadata"):
        check_url("http://169.254.169.254/", allow_private=True)
    with pytest.raises(InvalidInput, match="NUL or line break"):
        check_url("http://example.com/\r\nHost: evil")


def test_local_paths_stay_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "in.parquet").write_bytes(b"")
    assert check_local_path("in.parquet", [root]) == (root / "in.parquet").resolve()
    with pytest.raises(InvalidInput, match="contains '..'"):
        check_local_path(root / ".." / "data" / "in.parquet", [root])
    with pytest.raises(InvalidInput, match="outside the allowed roots"):
        check_local_path("/etc/passwd", [root])
    (root / "escape").symlink_to("/etc")
    with pytest.raises(InvalidInput, match="through a symbolic link"):
        check_local_path(root / "escape" / "passwd", [root])
    with pytest.raises(InvalidInput, match="outside the allowed roots"):
        check_location("file:///etc/passwd", [root])
    assert check_location("memory://bucket/x", [root]) == "memory://bucket/x"


def test_batch_route_refuses_locations_outside_the_roots(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    store = BatchStore(deployed.registry.engine)
    store.put_job(JobSpec(name="leak", model="models:/clf/1", input="/etc/passwd", output="o"))
    store.put_job(
        JobSpec(name="ssrf", model="models:/clf/1", input="http://169.254.169.254/x", output="o")
    )
    server = make_server(auth="off", allowed_roots=[tmp_path / "data"])
    leak = server.post("/v1/batch/jobs/leak/run")
    assert leak.status_code == 400 and "outside the allowed roots" in leak.json()["error"]
    ssrf = server.post("/v1/batch/jobs/ssrf/run")
    assert ssrf.status_code == 400 and "metadata" in ssrf.json()["error"]
    assert store.list_runs(None, environment="production", limit=10) == []


@pytest.mark.parametrize(
    ("filename", "stored_as"),
    [
        ("../../../evil.skops", "evil.skops"),
        ("..", "model"),
        (".", "model"),
        ("/etc/passwd", "passwd"),
        ("a\\..\\b.skops", "b.skops"),
    ],
)
def test_upload_names_cannot_escape(
    deployed: Client,
    make_server: Callable[..., TestClient],
    sklearn_classifier: tuple[Path, pd.DataFrame],
    filename: str,
    stored_as: str,
) -> None:
    path, _ = sklearn_classifier
    server = make_server(auth="off")
    sig = json.dumps({"inputs": [{"name": c, "type": "double"} for c in ROW]})
    answer = server.post(
        "/v1/models/up/versions",
        files={"artifact": (filename, path.read_bytes())},
        data={"flavor": "sklearn", "signature": sig},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["artifact"]["name"] == stored_as


# -- 5. request bodies are never unpickled --------------------------------------------------------

CONTENT_TYPES = [
    "application/json",
    "text/csv",
    "application/octet-stream",
    "application/x-pickle",
    "application/python-pickle",
    "application/x-npy",
    "application/vnd.apache.parquet",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
    "",
]


def test_pickle_bodies_are_refused_with_every_content_type(
    make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    marker = tmp_path / "body.ran"
    payload = pickle.dumps(_Exploit(marker))
    server = make_server(auth="off")
    for route in (
        "/v1/endpoints/clf/predict",
        "/v2/models/clf/infer",
        "/v1/feedback",
        "/v1/features/none/push",
        "/v1/endpoints/clf/replay",
    ):
        for content_type in CONTENT_TYPES:
            headers = {"content-type": content_type} if content_type else {}
            answer = server.post(route, content=payload, headers=headers)
            assert 400 <= answer.status_code < 500, (route, content_type, answer.text)
            assert "error" in answer.json(), (route, content_type)
    assert not marker.exists()
