"""Copy the site's JavaScript from npm into book/_static/vendor/, so pages need no CDN.

MathJax (equations), require.js, the Jupyter widgets HTML manager (the widget
snapshots), and Vega with Vega-Lite (the grid explorers, cbam_tutorial.book.grid_explorer,
which names the same versions) are fetched as pinned npm tarballs, checked against the registry's sha512
integrity, and unpacked once; later runs find them and do nothing. Only the npm registry
is contacted (set NPM_REGISTRY to use a mirror).

    python book/fetch_assets.py
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "_static" / "vendor"
REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")

WIDGET_FONTS = ("1551f4f60c37af51121f.woff2", "7a3337626410ca2f4071.woff2", "d878b0a6a1144760244f.woff2",
                "2285773e6b4b172f07d9.woff", "bb58e57c48a3e911f15f.woff", "eeccf4f66002c6f2ba24.woff",
                "491974d108fe4002b2aa.ttf", "527940b104eb2ea366c8.ttf", "be9ee23c0c6390141475.ttf")

# (package, version, sha512 integrity, {path inside the package: path(s) under vendor/})
PACKAGES = [
    ("mathjax", "3.2.2",
     "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
     {"es5/tex-chtml.js": "mathjax/tex-chtml.js", "es5/output/chtml/fonts/woff-v2/": "mathjax/output/chtml/fonts/woff-v2/",
      "es5/input/tex/extensions/": "mathjax/input/tex/extensions/", "es5/ui/": "mathjax/ui/",
      "es5/a11y/": "mathjax/a11y/"}),
    ("requirejs", "2.3.7",
     "sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
     {"require.js": "require.js"}),
    ("@jupyter-widgets/html-manager", "1.0.15",
     "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
     # embed-amd.js and its icon fonts, which its modules load from beside the manager
     # (html-manager/dist/) or, for the controls' own styles, from @jupyter-widgets/
     {"dist/embed-amd.js": "npm/@jupyter-widgets/html-manager/dist/embed-amd.js",
      **{f"dist/{name}": [f"npm/@jupyter-widgets/html-manager/dist/{name}", f"npm/@jupyter-widgets/{name}"]
         for name in WIDGET_FONTS}}),
    ("vega", "6.4.0",
     "sha512-rHXCq2LpEWCLMjXBEj7hocY9G0/i5TGYRayGGSj06VTF4+l2IG2Z7oeZKCjWbUh/7hTE/mVhbaOPB72wCElh6g==",
     {"build/vega.min.js": "vega/vega.min.js", "LICENSE": "vega/LICENSE-vega"}),
    ("vega-lite", "6.5.0",
     "sha512-fMXF6s0MrIg0UTWnLIfeFtgSLzVhyzSKobzGrh5rhS+mL6FOYFG3m7ouJ4U23gj65EK+gl9FIIT5w7wLNaAzkA==",
     {"build/vega-lite.min.js": "vega/vega-lite.min.js", "LICENSE": "vega/LICENSE-vega-lite"}),
]


def tarball_url(name: str, version: str) -> str:
    return f"{REGISTRY}/{name}/-/{name.split('/')[-1]}-{version}.tgz"


def check_integrity(payload: bytes, integrity: str, name: str) -> None:
    algorithm, expected = integrity.split("-", 1)
    actual = base64.b64encode(hashlib.new(algorithm, payload).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{name}: downloaded tarball does not match its pinned {algorithm} integrity; "
                         "the download was corrupted or the registry served another file. Try again, "
                         "or delete book/_static/vendor and rerun.")


def install(name: str, version: str, integrity: str, files: dict) -> None:
    layout = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:10]  # a new layout refetches
    marker = VENDOR / f".{name.replace('/', '_')}-{version}-{layout}"
    if marker.exists():
        return
    url = tarball_url(name, version)
    try:
        payload = urllib.request.urlopen(url, timeout=120).read()
    except OSError as error:
        raise SystemExit(f"could not download {url}: {error}. The site's scripts come from the npm "
                         "registry; check the connection or set NPM_REGISTRY to a mirror.") from error
    check_integrity(payload, integrity, name)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        for member in archive.getmembers():
            inner = member.name.split("/", 1)[1] if "/" in member.name else member.name  # drop "package/"
            for source, targets in files.items():
                if member.isfile() and (inner == source or (source.endswith("/") and inner.startswith(source))):
                    payload_bytes = archive.extractfile(member).read()
                    for target in [targets] if isinstance(targets, str) else targets:
                        destination = VENDOR / (target + inner[len(source):] if source.endswith("/") else target)
                        destination.parent.mkdir(parents=True, exist_ok=True)
                        destination.write_bytes(payload_bytes)
    marker.touch()
    print(f"fetched {name}@{version} into {VENDOR}")


def main() -> int:
    VENDOR.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        install(*package)
    return 0


if __name__ == "__main__":
    sys.exit(main())
