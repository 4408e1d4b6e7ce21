# ruff: noqa: E501 (the URL map: one URL a line)
"""Great Expectations' Data Docs, whole offline.

GX's page templates load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from public CDNs,
and a logo from GX's S3 (with a tracking query). A worker, the object store and an approver's browser
may reach none of them, and the reports server's sandbox would refuse them anyway. After GX builds a
site, `localize` rewrites every page to load the copies vendored under tasks/assets/datadocs/
(scripts/vendor_datadocs.py: pinned npm tarballs, integrity-checked) by relative paths, and copies
those files into the site's `static/vendor/`, so they travel with the pages into the object store.

The files a site may load without a viewer's session are exactly these copies and GX's own
`static/` files: `public_sha256()` is what the reports server checks a Data Docs static file against
before serving it to a sandboxed page (which has no cookies: its origin is opaque).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from tasks.common import link_or_copy, sha256_file

DOCS_DIR = "data_docs"  # a day's Data Docs sites, under reports/validation/date=D
ASSETS = Path(__file__).resolve().parent / "assets" / "datadocs"
MANIFEST = "MANIFEST.json"
VENDOR = "static/vendor"  # under a site's root, beside GX's own static/
_UNPKG_FC = "https://unpkg.com/bootstrap-table@{v}/dist/extensions/filter-control/bootstrap-table-filter-control"
CDN = {  # the exact URLs in GX 1.x's page templates -> the vendored file (ASSETS-relative)
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/dist/umd/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/dist/bootstrap-table.min.js",
    # the templates name the filter-control CSS of 1.19.0 (minified or not) beside 1.19.1's script: 1.19.1's serves
    _UNPKG_FC.format(v="1.19.0") + ".css": "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    _UNPKG_FC.format(v="1.19.0") + ".min.css": "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    _UNPKG_FC.format(v="1.19.1") + ".min.js": "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "@fortawesome/fontawesome-free/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/build/vega-embed.min.js",
}  # fmt: skip
_CDN = re.compile("|".join(re.escape(u) for u in sorted(CDN, key=len, reverse=True)) + r'(?=["\'])')
# GX's logo, light and dark, from its S3 with a per-render query: the site's own static copy instead
_LOGO = re.compile(r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/[a-z_-]+\.png(\?[^\"')]*)?")
# a reference to the site's static/ from any depth (GX's validation pages point one level short for the favicon)
_STATIC = re.compile(r"""((?:src|href)=["']|url\(\s*['"]?)(?:\./|(?:\.\./)+)?static/""")
# what a page may still point at outside the site: links a reader follows, never a load
_LOAD = re.compile(
    r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["'](?:https?:)?//|url\(\s*['"]?(?:https?:)?//""", re.I
)


class DataDocsError(RuntimeError):
    """A Data Docs page loads something from outside the site that no vendored file replaces."""


@cache
def manifest() -> dict:
    """Vendored file (ASSETS-relative) -> {sha256, from}."""
    return json.loads((ASSETS / MANIFEST).read_text())


def localize(site: Path) -> int:
    """Make a built Data Docs site whole offline: every page loads the vendored copies by relative path,
    and those copies sit in the site's static/vendor/. Returns the number of pages rewritten. A page
    left loading anything from outside the site (a new GX template) raises DataDocsError, naming it."""
    pages = {page: _localized(site, page) for page in sorted(site.rglob("*.html"))}  # all checked, then written
    if not pages:
        return 0
    for page, text in pages.items():
        page.write_text(text, encoding="utf-8")
    for rel in manifest():  # every GX page loads them all (and a stylesheet its fonts)
        dest = site / VENDOR / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(ASSETS / rel, dest)  # 2.7 MB a site otherwise; replaced, never written through
    return len(pages)


def _localized(site: Path, page: Path) -> str:
    up = "../" * (len(page.relative_to(site).parts) - 1)  # a page's way back to the site's root
    text = _CDN.sub(lambda m: f"{VENDOR}/{CDN[m.group(0)]}", page.read_text(encoding="utf-8"))
    text = _LOGO.sub("static/images/logo-long.png", text)
    text = _STATIC.sub(rf"\g<1>{up}static/", text)  # attributes and url() only, never data
    if hit := _LOAD.search(text):
        line = text[: hit.start()].count("\n") + 1
        raise DataDocsError(
            f"{page.relative_to(site)} line {line} loads from outside the site ({text[hit.start() : hit.end() + 60]!r}): "
            "add the file to scripts/vendor_datadocs.py and the URL to tasks/datadocs.CDN"
        )
    return text


@cache
def public_sha256() -> frozenset[str]:
    """sha256 of every file a Data Docs page may load without the viewer's session: the vendored copies
    and GX's own static files (images, fonts, styles). Nothing in it is data."""
    import importlib.util

    gx = importlib.util.find_spec("great_expectations")  # found, not imported: the API server needs no GX
    static = Path(gx.submodule_search_locations[0]) / "render" / "view" / "static"
    ours = {v["sha256"] for v in manifest().values()}
    return frozenset(ours | {sha256_file(p) for p in static.rglob("*") if p.is_file()})
