"""Checks on paths, URLs, names and archives that come from users, requests or config.

One place decides what Modelport may read, write or fetch on someone's behalf:

- `check_url`: a URL to fetch (``http(s)://`` through fsspec or httpx) must not name a
  link-local or cloud metadata address (169.254.0.0/16, fe80::/10, 169.254.169.254,
  ``metadata.google.internal``, fd00:ec2::254), nor, unless allowed, a loopback or
  private one. Every address the host resolves to is checked.
- `check_local_path`: a local path must have no ``..`` part and, links resolved, stay
  inside one of the allowed roots.
- `check_location`: either of the two, for a batch job's ``input``/``output``.
- `upload_name`: a client-supplied file name reduced to one safe path component.
- `extract_archive`: a ``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip`` model folder unpacked
  with no absolute or ``..`` member, no link, no device and a size cap.

Example::

    check_url("https://models.example.com/fraud.onnx")         # fine
    check_url("http://169.254.169.254/latest/meta-data/")       # InvalidInput
    check_local_path("/srv/data/in.parquet", [Path("/srv/data")])
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from modelport.errors import InvalidInput

#: Host names of cloud metadata services, refused whatever they resolve to.
METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
#: Metadata addresses (AWS, GCP, Azure, OpenStack IPv4; AWS IPv6), refused always.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254")
)
#: URL schemes fetched over the network by host name, whose addresses are checked.
HTTP_SCHEMES = frozenset({"http", "https"})
#: Archive suffixes a model folder may be registered as.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
#: Default cap on the unpacked size of an archive.
MAX_ARCHIVE_BYTES = 4 << 30
_FORBIDDEN_CHARS = frozenset("\0\r\n")


def check_url(url: str, *, allow_private: bool = False, what: str = "URL") -> str:
    """``url`` if fetching it is allowed; `InvalidInput` naming the reason otherwise.

    Only ``http``/``https`` URLs are resolved and checked; object-store URLs
    (``s3://bucket/key``) name a bucket, not a host. Resolution happens again when the
    URL is fetched, so a name that changes its answer in between is not caught here:
    refuse such names with network policy too.
    """
    _check_chars(url, what)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        return url
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise InvalidInput(f"{what} {url!r} has no host", hint="use http(s)://HOST/PATH")
    if host in METADATA_HOSTS:
        raise _refused(url, what, f"{host} is a cloud metadata service")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{what} {url!r} has an invalid port") from None
    for address in _addresses(host, port or (443 if scheme == "https" else 80), url, what):
        reason = _forbidden(address, allow_private)
        if reason:
            raise _refused(url, what, f"{host} resolves to {address}, {reason}")
    return url


def _addresses(
    host: str, port: int, url: str, what: str
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(
            f"{what} {url!r}: cannot resolve {host}: {exc}", hint="check the host name"
        ) from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if allow_private:
        return ""
    if address.is_loopback:
        return "a loopback address"
    if address.is_private or address.is_unspecified or address.is_reserved:
        return "a private or reserved address"
    if address.is_multicast:
        return "a multicast address"
    return ""


def _refused(url: str, what: str, reason: str) -> InvalidInput:
    return InvalidInput(
        f"{what} {url!r} is refused: {reason}",
        hint="fetch only from public hosts; loopback and private addresses are allowed "
        "with MODELPORT_ALLOW_PRIVATE_URLS=true, link-local and metadata addresses never",
    )


def _check_chars(text: str, what: str) -> None:
    if any(c in _FORBIDDEN_CHARS for c in text):
        raise InvalidInput(
            f"{what} {text!r} contains a NUL or line break", hint="remove control characters"
        )


def check_local_path(path: str | Path, roots: Sequence[Path], *, what: str = "path") -> Path:
    """``path``, resolved, if it has no ``..`` part and stays inside one of ``roots``
    once symbolic links are followed; `InvalidInput` otherwise. A relative path is
    taken from the first root."""
    text = str(path)
    _check_chars(text, what)
    if not roots:
        raise InvalidInput(f"no allowed roots to check {what} {text!r} against")
    candidate = Path(text).expanduser()
    if ".." in candidate.parts:
        raise InvalidInput(
            f"{what} {text!r} contains '..'",
            hint="name the file by a path without '..' inside an allowed root",
        )
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve()
    for root in roots:
        if resolved.is_relative_to(Path(root).expanduser().resolve()):
            return resolved
    shown = ", ".join(str(r) for r in roots)
    escaped = " (through a symbolic link)" if candidate.absolute() != resolved else ""
    raise InvalidInput(
        f"{what} {text!r} is outside the allowed roots{escaped}: {resolved} is not under {shown}",
        hint="use a path under one of them, or add its folder to MODELPORT_ALLOWED_ROOTS",
    )


def check_location(
    location: str,
    roots: Sequence[Path] | None,
    *,
    allow_private: bool = False,
    what: str = "location",
) -> str:
    """A batch input or output: a local path or ``file://`` URL inside ``roots`` (any
    local path when ``roots`` is None), or a remote URL that `check_url` allows."""
    _check_chars(location, what)
    if "://" not in location or location.startswith("file://"):
        local = location.removeprefix("file://")
        if roots is None:
            if ".." in Path(local).parts:
                raise InvalidInput(f"{what} {location!r} contains '..'")
            return location
        # Relative to the working folder, as the job's reader and writer take it.
        check_local_path(Path(local).expanduser().absolute(), roots, what=what)
        return location
    return check_url(location, allow_private=allow_private, what=what)


def upload_name(filename: str | None, default: str) -> str:
    """A client-supplied file name as one plain path component (its last part), or
    ``default`` when nothing usable is left."""
    text = (filename or "").replace("\\", "/")
    name = PurePosixPath(text).name
    if not name or name in (".", "..") or any(c in name for c in "\0\r\n"):
        return default
    return name


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a file with an archive suffix `extract_archive` unpacks."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """The archive's name without its archive suffix: ``model.tar.gz`` -> ``model``."""
    lower = path.name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return path.name[: -len(suffix)] or "model"
    return path.name


def extract_archive(archive: Path, dest: Path, *, max_bytes: int = MAX_ARCHIVE_BYTES) -> Path:
    """Unpack a model folder archive into the empty folder ``dest``; return the folder.

    Every member is checked before anything is written: an absolute name, a ``..``
    part, a symbolic or hard link, a device or FIFO, or a total size over ``max_bytes``
    refuses the whole archive. An archive holding one top-level folder gives that
    folder; otherwise ``dest`` itself.
    """
    lower = archive.name.lower()
    try:
        if lower.endswith(".zip"):
            _extract_zip(archive, dest, max_bytes)
        else:
            _extract_tar(archive, dest, max_bytes)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InvalidInput(
            f"cannot unpack the archive {archive.name}: {type(exc).__name__}: {exc}",
            hint="check that the file is a complete .tar, .tar.gz, .tgz or .zip",
        ) from None
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


def _check_member(archive: Path, name: str) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or "\0" in name:
        raise _bad_member(archive, name, "has an empty or NUL name")
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise _bad_member(archive, name, "is an absolute path")
    if ".." in pure.parts:
        raise _bad_member(archive, name, "climbs out of the folder with '..'")


def _bad_member(archive: Path, name: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"the archive {archive.name} is refused: its member {name!r} {why}",
        hint="pack the model folder with relative paths inside it and no links "
        "(e.g. tar -czf model.tar.gz -C parent model)",
    )


def _check_total(archive: Path, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise InvalidInput(
            f"the archive {archive.name} unpacks to {total} bytes, over the limit of {max_bytes}",
            hint="register a smaller model folder",
        )


def _extract_tar(archive: Path, dest: Path, max_bytes: int) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        total = 0
        for member in members:
            _check_member(archive, member.name)
            if member.issym() or member.islnk():
                raise _bad_member(archive, member.name, f"is a link to {member.linkname!r}")
            if not (member.isfile() or member.isdir()):
                raise _bad_member(archive, member.name, "is a device, FIFO or other special file")
            total += member.size
        _check_total(archive, total, max_bytes)
        # The "data" filter refuses the same things again and drops modes and owners.
        tar.extractall(dest, members=members, filter="data")


def _extract_zip(archive: Path, dest: Path, max_bytes: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            _check_member(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _bad_member(archive, info.filename, "is a symbolic link")
            kind = stat.S_IFMT(mode)  # 0 when the archiver recorded no file type
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise _bad_member(archive, info.filename, "is a device, FIFO or special file")
            total += info.file_size
        _check_total(archive, total, max_bytes)
        root = dest.resolve()
        written = 0
        for info in infos:
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(root):
                raise _bad_member(archive, info.filename, "lands outside the folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    # The sizes in the directory are the archive's own claim: count.
                    _check_total(archive, written, max_bytes)
                    out.write(chunk)
            os.chmod(target, 0o644)
