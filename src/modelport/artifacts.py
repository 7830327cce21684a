"""Content-addressed artifact storage.

An artifact (one file, or a folder for custom models) is stored once under the
SHA-256 of its content, so registering the same file twice stores it once and any
change to the bytes is detected at load. A folder's digest is the SHA-256 of a
manifest of its files' relative paths and digests, so a file changed, added, removed
or renamed inside it changes the digest too.

A folder holds regular files and folders only: a symbolic link (to a file, a folder
or nowhere), a FIFO or a device inside it is refused, so neither hashing nor copying
ever reads anything outside the tree.

`ArtifactStore` is the small interface object storage implements later;
`LocalArtifactStore` keeps objects on local disk:

    root/sha256/ab/abcdef.../<original name>
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelport.errors import ArtifactError

_CHUNK = 1 << 20

#: Folders left out of a folder's digest and copy: Python's bytecode caches.
IGNORED_DIRS = frozenset({"__pycache__"})


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


def tree_files(folder: Path) -> list[str]:
    """The regular files under ``folder``, as sorted POSIX paths relative to it.

    Raises `ArtifactError` for a symbolic link or a special file anywhere in the tree
    (links are never followed, so nothing outside ``folder`` is read).
    """
    found: list[str] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        here = Path(top)
        for name in list(dirs):
            if (here / name).is_symlink():
                raise _link_error(folder, here / name)
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS)
        for name in files:
            mode = os.lstat(here / name).st_mode
            if stat.S_ISLNK(mode):
                raise _link_error(folder, here / name)
            if not stat.S_ISREG(mode):
                raise ArtifactError(
                    f"artifact folder {folder} contains {here / name}, which is not a "
                    "regular file (a FIFO, socket or device)",
                    hint="keep only regular files and folders in a model folder",
                )
            found.append((here / name).relative_to(folder).as_posix())
    return sorted(found)


def _link_error(folder: Path, link: Path) -> ArtifactError:
    return ArtifactError(
        f"artifact folder {folder} contains a symbolic link {link} "
        f"(pointing to {os.readlink(link)})",
        hint="copy the file or folder in instead of linking it; links are refused so "
        "that nothing outside the model folder is read or stored",
    )


def sha256_path(path: Path) -> tuple[str, int]:
    """Digest and total size of a file, or of a folder through its manifest."""
    if path.is_file():
        return sha256_file(path), path.stat().st_size
    if not path.is_dir():
        raise ArtifactError(f"artifact {path} does not exist", hint="check the path")
    manifest = hashlib.sha256()
    size = 0
    for rel in tree_files(path):
        file = path / rel
        manifest.update(f"{rel}\0{sha256_file(file)}\n".encode())
        size += file.stat().st_size
    return manifest.hexdigest(), size


def check_artifact_name(name: str) -> str:
    """An artifact's stored name must be one plain path component (no ``/``, ``..``, NUL)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ArtifactError(
            f"invalid artifact name {name!r}: it must be a single file or folder name",
            hint="the registry row was edited by hand; re-register the version",
        )
    return name


class ArtifactStore(Protocol):
    """Put an artifact, get a local path to it back, check it is intact."""

    def put(self, source: Path) -> ArtifactRef: ...

    def local_path(self, ref: ArtifactRef) -> Path: ...

    def exists(self, ref: ArtifactRef) -> bool: ...

    def verify(self, ref: ArtifactRef, *, owner: str | None = None) -> None: ...


class LocalArtifactStore:
    """Artifacts on local disk, addressed by content."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ArtifactError(
                f"invalid artifact digest {sha256!r}: expected 64 lowercase hex digits",
                hint="the registry row was edited by hand; re-register the version",
            )
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, source: Path) -> ArtifactRef:
        """Store a file or folder (a link given as ``source`` itself is followed once;
        links inside a folder are refused) and return its reference."""
        source = Path(source)
        if source.is_symlink():
            source = source.resolve()
        sha, size = sha256_path(source)
        ref = ArtifactRef(
            sha256=sha, name=check_artifact_name(source.name), size=size, is_dir=source.is_dir()
        )
        final = self._dir(sha)
        if (final / ref.name).exists():
            if self._digest(final / ref.name) == sha:
                return ref
            # The stored copy was changed after it was written: store it afresh.
            _remove(final / ref.name)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".put-", dir=final.parent))
        try:
            if source.is_dir():
                _copy_tree(source, staging / ref.name)
            else:
                shutil.copy2(source, staging / ref.name)
            if self._digest(staging / ref.name) != sha:
                raise ArtifactError(
                    f"{source} changed while it was being stored",
                    hint="register it again once nothing is writing to it",
                )
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

    @staticmethod
    def _digest(path: Path) -> str | None:
        try:
            return sha256_path(path)[0]
        except ArtifactError:
            return None

    def local_path(self, ref: ArtifactRef) -> Path:
        path = self._dir(ref.sha256) / check_artifact_name(ref.name)
        if not path.exists():
            raise ArtifactError(
                f"artifact {ref.uri} is missing from {self.root}",
                hint="the artifact store was moved or pruned; re-register the version",
            )
        return path

    def exists(self, ref: ArtifactRef) -> bool:
        return (self._dir(ref.sha256) / check_artifact_name(ref.name)).exists()

    def verify(self, ref: ArtifactRef, *, owner: str | None = None) -> None:
        """Raise `ArtifactError` unless the stored bytes still hash to ``ref.sha256``.

        ``owner`` (e.g. ``models:/fraud/3``) is named in the error, with the path and
        both digests, so whoever reads it knows which version to re-register.
        """
        path = self.local_path(ref)
        what = f"the artifact of {owner}" if owner else f"artifact {ref.name}"
        try:
            actual, _ = sha256_path(path)
        except ArtifactError as exc:
            raise ArtifactError(
                f"{what} at {path} is corrupt and was not loaded: {exc.message}",
                hint="the stored folder was changed after registration; restore it from "
                "a backup or re-register the model, then deploy the new version",
            ) from None
        if actual != ref.sha256:
            raise ArtifactError(
                f"{what} at {path} is corrupt and was not loaded: its SHA-256 is now "
                f"{actual}, the registry recorded {ref.sha256}",
                hint="the stored file was changed after registration; restore it from a "
                "backup or re-register the model (a new version), then deploy that version",
            )


def _copy_tree(source: Path, target: Path) -> None:
    """Copy the regular files `tree_files` lists (and only them) from source to target."""
    target.mkdir()
    for rel in tree_files(source):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest, follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
