# ruff: noqa: E501 (the pinned integrity table: one package a line)
"""Vendor the third-party files Great Expectations' Data Docs load from CDNs, so a day's Data Docs
render styled and complete offline (tasks/datadocs.py rewrites the pages to these copies).

Each package is fetched from the npm registry at a pinned version, its tarball checked against the
pinned sha512 integrity (the registry's own), and only the files the pages use are kept, with the
package's licence, under tasks/assets/datadocs/<package>/; MANIFEST.json lists every file with its
sha256 (the reports server serves a Data Docs static file without a session only when its bytes are
one of these). The result is committed: runs and CI need no network for it. Re-run only to change a
version (then update PACKAGES' integrity from `npm view <pkg>@<version> dist.integrity`).

    python scripts/vendor_datadocs.py
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.common import atomic_dir  # noqa: E402
from tasks.datadocs import ASSETS, CDN, MANIFEST  # noqa: E402 (the URL map is the pages' side of this)

REGISTRY = "https://registry.npmjs.org"
# package@version -> the files kept (paths in the tarball under package/, shell patterns)
PACKAGES = {
    "bootstrap@4.3.1": ["dist/css/bootstrap.min.css", "dist/js/bootstrap.min.js", "LICENSE"],
    "jquery@3.7.1": ["dist/jquery.min.js", "LICENSE.txt"],
    "popper.js@1.12.9": ["dist/umd/popper.min.js", "README.md"],
    "bootstrap-table@1.19.1": [
        "dist/bootstrap-table.min.css",
        "dist/bootstrap-table.min.js",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
        "LICENSE",
    ],
    "bootstrap-datepicker@1.9.0": [
        "dist/css/bootstrap-datepicker.min.css",
        "dist/js/bootstrap-datepicker.min.js",
        "LICENSE",
    ],
    "@fortawesome/fontawesome-free@6.6.0": ["css/all.min.css", "webfonts/*.woff2", "LICENSE.txt"],
    "@forevolve/bootstrap-dark@1.1.0": ["dist/css/bootstrap-prefers-dark.css", "LICENSE"],
    "vega@5.33.1": ["build/vega.min.js", "LICENSE"],
    "vega-lite@5.23.0": ["build/vega-lite.min.js", "LICENSE"],
    "vega-embed@6.29.0": ["build/vega-embed.min.js", "LICENSE"],
}
INTEGRITY = {  # npm's dist.integrity of each tarball, pinned: a changed tarball is refused
    "bootstrap@4.3.1": "sha512-rXqOmH1VilAt2DyPzluTi2blhk17bO7ef+zLLPlWvG494pDxcM234pJ8wTc/6R40UWizAIIMgxjvxZg5kmsbag==",
    "jquery@3.7.1": "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
    "popper.js@1.12.9": "sha512-s0EEi9xiSCdqz9lV4IiVH5yIZnDX/U1t0tCjB+0jXx9jW8lrR7kOpVupiUg175ogqVoudpDXHF1p6dKATCHMeg==",
    "bootstrap-table@1.19.1": "sha512-WvV+l1AI/C+zThaKmfHmi/IuayVNB0qdFyEhFx1jyZhO0oLtNJNANkCR3rvJf6Dkh72dsLElxpE/bzK9seEQLA==",
    "bootstrap-datepicker@1.9.0": "sha512-9rYYbaVOheGYxjOr/+bJCmRPihfy+LkLSg4fIFMT9Od8WwWB/MB50w0JO1eBgKUMbb7PFHQD5uAfI3ArAxZRXA==",
    "@fortawesome/fontawesome-free@6.6.0": "sha512-60G28ke/sXdtS9KZCpZSHHkCbdsOGEhIUGlwq6yhY74UpTiToIh8np7A8yphhM4BWsvNFtIvLpi4co+h9Mr9Ow==",
    "@forevolve/bootstrap-dark@1.1.0": "sha512-A3ucpEpxPoTVO490lZZCfjPXxv832l7mm1IxX3bXyxvgwnPGXDLyh7dWrphXKO8YBAu3EswbBEu3VSW8NRMW3A==",
    "vega@5.33.1": "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
    "vega-lite@5.23.0": "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
    "vega-embed@6.29.0": "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
}


def fetch(spec: str) -> tarfile.TarFile:
    name, _, version = spec.rpartition("@")
    with urllib.request.urlopen(f"{REGISTRY}/{name}/{version}", timeout=60) as r:  # noqa: S310 (the registry)
        url = json.load(r)["dist"]["tarball"]
    with urllib.request.urlopen(url, timeout=120) as r:  # noqa: S310
        data = r.read()
    got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != INTEGRITY[spec]:
        raise SystemExit(f"{spec}: the tarball's integrity is {got}, not the pinned {INTEGRITY[spec]}: refused")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


def main() -> None:
    files = {}
    with atomic_dir(ASSETS) as out:  # a failed fetch or refused tarball leaves the committed files as they were
        for spec, keep in PACKAGES.items():
            name = spec.rpartition("@")[0]
            with fetch(spec) as tar:
                for member in tar.getmembers():
                    _, _, rel = member.name.partition("/")  # drop the tarball's top folder ("package/")
                    if not member.isfile() or not rel or not any(fnmatch.fnmatchcase(rel, k) for k in keep):
                        continue
                    data = tar.extractfile(member).read()
                    dest = out / name / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(data)
                    files[f"{name}/{rel}"] = {"sha256": hashlib.sha256(data).hexdigest(), "from": spec}
        missing = sorted(set(CDN.values()) - set(files))
        if missing:
            raise SystemExit(f"the URL map in tasks/datadocs.py names files no package gave: {missing}")
        (out / MANIFEST).write_text(json.dumps(dict(sorted(files.items())), indent=1) + "\n")
    total = sum((ASSETS / f).stat().st_size for f in files)
    print(f"{len(files)} files, {total / 1e6:.1f} MB -> {ASSETS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
