from __future__ import annotations

from pathlib import Path

import pytest

from modelport.artifacts import LocalArtifactStore, sha256_path
from modelport.errors import ArtifactError


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    src = tmp_path / "m.bin"
    src.write_bytes(b"model-bytes")
    a = store.put(src)
    b = store.put(src)
    assert a == b
    assert store.local_path(a).read_bytes() == b"model-bytes"
    assert a.sha256 == sha256_path(src)[0]
    store.verify(a)


def test_folder_digest_covers_names_and_content(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "model.py").write_text("x = 1\n")
    first, _ = sha256_path(folder)
    (folder / "model.py").write_text("x = 2\n")
    assert sha256_path(folder)[0] != first
    store = LocalArtifactStore(tmp_path / "store")
    ref = store.put(folder)
    assert ref.is_dir and (store.local_path(ref) / "model.py").read_text() == "x = 2\n"


def test_tampered_artifact_fails_verification(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    src = tmp_path / "m.bin"
    src.write_bytes(b"original")
    ref = store.put(src)
    store.local_path(ref).write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="is corrupt"):
        store.verify(ref)


def test_missing_artifact_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        sha256_path(tmp_path / "nope")
