"""Content-addressed artifact storage.

An artifact (one file, or a folder for custom models) is stored once under the
SHA-256 of its content, so registering the same file twice stores it once and any
change to the bytes is detected at load. A folder's digest is the SHA-256 of a
manifest of its files' relative paths and digests.

`ArtifactStore` is the small interface object storage implements later;
`LocalArtifactStore` keeps objects on local disk:

    root/sha256/ab/abcdef.../<original name>
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelport.errors import ArtifactError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives in the store and what it is."""

    sha256: str
    name: str
    size: int
    is_dir: bool = False

    @property
    def uri(self) -> str:
        return f"sha256:{self.sha256}/{self.name}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: Path) -> tuple[str, int]:
    """Digest and total size of a file, or of a folder through its manifest."""
    if path.is_file():
        return sha256_file(path), path.stat().st_size
    if not path.is_dir():
        raise ArtifactError(f"artifact {path} does not exist", hint="check the path")
    manifest = hashlib.sha256()
    size = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if file.is_symlink():
            raise ArtifactError(
                f"artifact folder {path} contains a symbolic link {file}",
                hint="copy the file in instead of linking it",
            )
        rel = file.relative_to(path).as_posix()
        if "__pycache__" in rel.split("/"):
            continue
        manifest.update(f"{rel}\0{sha256_file(file)}\n".encode())
        size += file.stat().st_size
    return manifest.hexdigest(), size


class ArtifactStore(Protocol):
    """Put an artifact, get a local path to it back, check it is intact."""

    def put(self, source: Path) -> ArtifactRef: ...

    def local_path(self, ref: ArtifactRef) -> Path: ...

    def exists(self, ref: ArtifactRef) -> bool: ...

    def verify(self, ref: ArtifactRef) -> None: ...


class LocalArtifactStore:
    """Artifacts on local disk, addressed by content."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, source: Path) -> ArtifactRef:
        source = Path(source)
        sha, size = sha256_path(source)
        ref = ArtifactRef(sha256=sha, name=source.name, size=size, is_dir=source.is_dir())
        final = self._dir(sha)
        if (final / ref.name).exists():
            return ref
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".put-", dir=final.parent))
        try:
            if source.is_dir():
                shutil.copytree(
                    source, staging / ref.name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(source, staging / ref.name)
            try:
                os.rename(staging, final)
            except OSError:
                # The same content is stored already (perhaps under another name, or by
                # a concurrent writer): add this name beside it.
                if not (final / ref.name).exists():
                    os.rename(staging / ref.name, final / ref.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ref

    def local_path(self, ref: ArtifactRef) -> Path:
        path = self._dir(ref.sha256) / ref.name
        if not path.exists():
            raise ArtifactError(
                f"artifact {ref.uri} is missing from {self.root}",
                hint="the artifact store was moved or pruned; re-register the version",
            )
        return path

    def exists(self, ref: ArtifactRef) -> bool:
        return (self._dir(ref.sha256) / ref.name).exists()

    def verify(self, ref: ArtifactRef) -> None:
        """Raise `ArtifactError` unless the stored bytes still hash to ``ref.sha256``."""
        actual, _ = sha256_path(self.local_path(ref))
        if actual != ref.sha256:
            raise ArtifactError(
                f"artifact {ref.name} is corrupt: its SHA-256 is {actual}, the registry "
                f"recorded {ref.sha256}",
                hint="the stored file was changed after registration; re-register the model",
            )
