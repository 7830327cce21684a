"""The dashboard's files: /ui/ answers the page (never cached), its assets come from the
package under a content digest (cached for good, ETag on every answer), every module
the page imports is there, and nothing outside the package is served."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from modelport.serving.routes.ui import CSP, IMMUTABLE, catalog


def asset_urls(page: str) -> list[str]:
    return re.findall(r'(?:href|src)="(static/[^"]+)"', page)


def test_ui_redirects_to_the_page_with_a_trailing_slash(server: TestClient) -> None:
    reply = server.get("/ui", follow_redirects=False)
    assert reply.status_code == 307 and reply.headers["location"] == "ui/"
    assert server.get("/ui").url.path == "/ui/"


def test_the_page_is_never_cached_and_loads_nothing_from_elsewhere(server: TestClient) -> None:
    reply = server.get("/ui/")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["content-security-policy"] == CSP
    page = reply.text
    assert "{{" not in page and "http://" not in page and "https://" not in page
    urls = asset_urls(page)
    assert f"static/{catalog().digest}/app.js" in urls
    assert all(u.startswith(f"static/{catalog().digest}/") for u in urls)


def test_assets_are_cached_for_good_under_their_digest(server: TestClient) -> None:
    types = {
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
    }
    for url in asset_urls(server.get("/ui/").text):
        reply = server.get(f"/ui/{url}")
        assert reply.status_code == 200, url
        assert reply.headers["cache-control"] == IMMUTABLE
        assert reply.headers["content-type"] == types[url[url.rindex(".") :]]
        again = server.get(f"/ui/{url}", headers={"if-none-match": reply.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


def test_an_old_digest_gets_the_current_file_revalidated(server: TestClient) -> None:
    reply = server.get("/ui/static/0123456789ab/app.css")
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-cache"
    assert reply.headers["etag"] == catalog().assets["app.css"].etag
    assert server.get("/ui/static/app.css").status_code == 200


def test_only_the_packaged_files_are_served(server: TestClient) -> None:
    for path in ("nope.js", "../routes/ui.py", "__init__.py", "vendor/../../settings.py"):
        reply = server.get(f"/ui/static/{catalog().digest}/{path}")
        assert reply.status_code == 404, path
    assert "__init__.py" not in catalog().assets


def test_every_module_the_pages_import_ships_and_uplot_is_pinned() -> None:
    assets = catalog().assets
    for name, asset in assets.items():
        if name.endswith(".js") and not name.startswith("vendor/"):
            for imported in re.findall(r'from "\./([^"]+)"', asset.body.decode()):
                assert imported in assets, f"{name} imports {imported}"
    uplot = assets["vendor/uPlot.iife.min.js"].body
    assert uplot.startswith(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "vendor/uPlot.LICENSE.txt" in assets and "vendor/uPlot.min.css" in assets
