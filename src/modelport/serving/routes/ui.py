"""The dashboard at ``/ui/``: static files that ship inside the package (`modelport.ui`),
read once and served from memory.

``GET /ui/`` answers ``index.html``, never cached, so a new release shows at once; its
asset URLs are ``static/<digest>/...``, where ``<digest>`` hashes every asset, so those
answers are cached for a year (``immutable``) and a release changes every URL. An asset
asked for under another digest (a page loaded before an upgrade) is still answered,
revalidated by its ``ETag``. Only files of the package with a known type are served.

The pages are plain ES modules and one stylesheet, with no build step and nothing
fetched from elsewhere (the vendored uPlot included); they read the same JSON API as
the CLI (``/v1/...``). See ``docs/ui.md``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from modelport import __version__
from modelport.errors import NotFound

router = APIRouter(prefix="/ui", tags=["dashboard"], include_in_schema=False)

#: What is served, by file suffix; anything else in the package is not.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
#: The page may load only what this server sends (scripts, styles, data).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'"
)
_PAGE_HEADERS = {
    "cache-control": REVALIDATE,
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class Catalog:
    """Every servable file of the package by its path (``js/app.js``), the digest of
    them all, and the index page with its asset URLs filled in."""

    assets: dict[str, Asset]
    digest: str
    index: bytes


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for item in folder.iterdir():
        name = prefix + item.name
        if item.is_dir():
            if not item.name.startswith(("_", ".")):
                found |= _walk(item, name + "/")
            continue
        content_type = CONTENT_TYPES.get("." + item.name.rpartition(".")[2])
        if content_type is not None:
            body = item.read_bytes()
            found[name] = Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:20]}"')
    return found


@functools.cache
def catalog() -> Catalog:
    """The dashboard's files, read from the package on first use."""
    assets = _walk(resources.files("modelport.ui"))
    page = assets.pop("index.html")
    digest = hashlib.sha256(
        "".join(f"{name}{asset.etag}" for name, asset in sorted(assets.items())).encode()
    ).hexdigest()[:12]
    index = (
        page.body.decode()
        .replace("{{static}}", f"static/{digest}")
        .replace("{{version}}", __version__)
    )
    return Catalog(assets, digest, index.encode())


@router.get("")
def dashboard_root() -> Response:
    """``/ui`` -> ``/ui/``: the pages' URLs are relative to it."""
    return RedirectResponse("ui/", status_code=307)


@router.get("/")
def dashboard() -> Response:
    """The dashboard's single page; the router in ``js/app.js`` draws each page."""
    return Response(catalog().index, media_type=CONTENT_TYPES[".html"], headers=_PAGE_HEADERS)


@router.get("/static/{path:path}")
def static(path: str, request: Request) -> Response:
    """A packaged asset: ``static/<digest>/app.js`` (cached for good) or, under any
    other first folder or none, the current file, revalidated by its ETag."""
    files = catalog()
    first, _, rest = path.partition("/")
    if first == files.digest and rest in files.assets:
        name, cache = rest, IMMUTABLE
    elif path in files.assets:
        name, cache = path, REVALIDATE
    elif rest in files.assets:
        name, cache = rest, REVALIDATE
    else:
        raise NotFound(f"the dashboard has no file {path!r}", hint="open /ui/")
    asset = files.assets[name]
    headers = {"cache-control": cache, "etag": asset.etag, "x-content-type-options": "nosniff"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)
