"""Data Docs whole offline (tasks/datadocs.py): a real GX site's pages load only the site's own files,
the vendored copies are the pinned ones, and a page that would load from outside is refused by name."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import pytest

from tasks.datadocs import ASSETS, CDN, MANIFEST, VENDOR, DataDocsError, localize, manifest, public_sha256


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A Data Docs site as validate builds one: a real GX checkpoint, then localized."""
    import great_expectations as gx
    import pandas as pd

    from tasks.validate import run_checkpoint

    docs = tmp_path_factory.mktemp("docs") / "events"
    frame = pd.DataFrame({"user_id": ["1", "2", None], "rating": [3.0, 4.0, 9.0]})
    checks = [
        ("ids", gx.expectations.ExpectColumnValuesToNotBeNull(column="user_id")),
        ("rating", gx.expectations.ExpectColumnValuesToBeBetween(column="rating", min_value=0, max_value=5)),
    ]
    _, page = run_checkpoint("events", frame, checks, docs, dt.date(1998, 3, 1))
    localize(docs)
    return docs, page


def _loads(html: str) -> list[str]:
    return re.findall(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["']([^"'#]+)["']""", html, re.I)


def test_every_page_loads_only_files_of_its_own_site(site):
    docs, page = site
    pages = sorted(docs.rglob("*.html"))
    assert page in pages and len(pages) >= 3  # index, the suite, the validation result
    for p in pages:
        text = p.read_text()
        assert "cdn" not in text and "unpkg.com" not in text and "amazonaws.com" not in text, p
        for ref in _loads(text):
            assert not ref.startswith(("http:", "https:", "//")), (p, ref)
            assert (p.parent / ref).resolve().is_file(), (p, ref)  # the relative path reaches the copy
    fonts = re.findall(r"url\(\.\./webfonts/([^)]+\.woff2)\)", (docs / VENDOR / CDN[_fa()]).read_text())
    assert fonts and all((docs / VENDOR / "@fortawesome/fontawesome-free/webfonts" / f).is_file() for f in fonts)


def _fa() -> str:
    return next(u for u in CDN if "font-awesome" in u)


def test_the_vendored_files_are_the_pinned_ones_and_public(site):
    docs, _ = site
    files = manifest()
    assert set(CDN.values()) <= set(files)
    for rel, entry in files.items():
        assert hashlib.sha256((ASSETS / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    on_disk = {str(p.relative_to(ASSETS)) for p in ASSETS.rglob("*") if p.is_file()} - {MANIFEST}
    assert on_disk == set(files)  # nothing unlisted rides along
    for p in (docs / "static").rglob("*"):  # every static file of a built site may be served without a session
        if p.is_file():
            assert hashlib.sha256(p.read_bytes()).hexdigest() in public_sha256(), p


def test_a_page_loading_from_outside_the_site_is_refused_by_name(tmp_path):
    (tmp_path / "validations").mkdir()
    page = tmp_path / "validations" / "run.html"
    page.write_text('<html>\n<script src="https://cdn.example.org/new-lib@2.js"></script>\n</html>')
    index = tmp_path / "index.html"  # a page localize can make local, before the refused one
    index.write_text(GOOD := '<html><script src="https://code.jquery.com/jquery-3.7.1.min.js"></script></html>')
    with pytest.raises(DataDocsError, match=r"validations/run.html line 2 .*cdn\.example\.org.*vendor_datadocs"):
        localize(tmp_path)
    assert index.read_text() == GOOD and not (tmp_path / VENDOR).exists()  # every page checked before any is written
    index.unlink()
    page.write_text("<html><div style=\"background: url('https://cdn.example.org/x.png')\"></div></html>")
    with pytest.raises(DataDocsError, match=r"x\.png"):
        localize(tmp_path)
    page.write_text('<html><a href="https://greatexpectations.io">a link a reader follows</a></html>')
    assert localize(tmp_path) == 1


def test_localizing_a_site_again_leaves_the_vendored_files_whole(site):
    import shutil
    import tempfile

    docs, _ = site
    root = ASSETS.parents[2] / ".run"  # the checkout's disk: the copies are links to the vendored files
    root.mkdir(exist_ok=True)
    again = Path(tempfile.mkdtemp(dir=root)) / "events"
    try:
        shutil.copytree(docs, again, ignore=shutil.ignore_patterns("vendor"))
        localize(again)
        jquery = again / VENDOR / CDN["https://code.jquery.com/jquery-3.7.1.min.js"]
        assert jquery.stat().st_ino == (ASSETS / CDN["https://code.jquery.com/jquery-3.7.1.min.js"]).stat().st_ino
        before = sorted(p.read_text() for p in again.rglob("*.html"))
        localize(again)  # a re-run over the same site, its copies links to the vendored files
        assert sorted(p.read_text() for p in again.rglob("*.html")) == before  # already local: unchanged
        for rel, entry in manifest().items():
            assert hashlib.sha256((ASSETS / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    finally:
        shutil.rmtree(again.parent)


def test_the_public_files_are_known_without_importing_gx():
    """The reports server answers a sandboxed page's static request from public_sha256(): finding GX's
    static folder must not import GX (3 s and 2,400 modules, in every API-server worker)."""
    import subprocess
    import sys

    code = "import sys; from tasks.datadocs import public_sha256 as p; p(); print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
