"""Refresh the npm packages vendored into api/assets/vendor/ (the dashboard's and GraphiQL's).

Run by hand after changing a version below (`python scripts/vendor.py`); `make run` and
`make test` never need Node. Each package is fetched with `npm pack`, its tarball checked
against the pinned `integrity` (the registry's sha512, recomputed here rather than taken
from npm's word), and only the listed files plus the license are copied.
`python scripts/vendor.py --check` verifies the committed copies against the tarballs
without writing anything.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "api" / "assets" / "vendor"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str
    # Path inside the tarball's package/ folder -> file name under vendor/<folder>/.
    files: dict[str, str]
    license: str = "LICENSE"

    @property
    def folder(self) -> str:
        return self.name.replace("@", "").replace("/", "-")


PACKAGES = [
    Package(
        "graphql-ws",
        "6.4.2",
        "sha512-wxhPhhOGJo8PbGDkBYVE76sZLDrS+GkyrR4bZECSLVbo0pZZNKs0HtBh2Ip/uaUuiVUxwO9ssI9R92buQfNSqQ==",
        {"dist/client.js": "client.js", "dist/common-CGW11Fyb.js": "common-CGW11Fyb.js"},
        license="LICENSE.md",
    ),
    Package(
        "uplot",
        "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        {"dist/uPlot.esm.js": "uPlot.esm.js", "dist/uPlot.min.css": "uPlot.min.css"},
    ),
    # GraphiQL and the React it runs on: the versions Strawberry's own page loads from a CDN.
    Package(
        "react",
        "18.2.0",
        "sha512-/3IjMdb2L9QbBdWiW5e3P2/npwMBaU9mHCSCUzNln0ZCYbcfTsGbTJrU/kGemdH2IWmB2ioZ+zkxtmq6g09fGQ==",
        {"umd/react.production.min.js": "react.production.min.js"},
    ),
    Package(
        "react-dom",
        "18.2.0",
        "sha512-6IMTriUmvsjHUjNtEDudZfuDQUoWXVxKHhlEGSk81n4YFS+r/Kl99wXiwlVXtPBtJenozv2P+hxDsw9eA7Xo6g==",
        {"umd/react-dom.production.min.js": "react-dom.production.min.js"},
    ),
    Package(
        "graphiql",
        "3.8.3",
        "sha512-cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw==",
        {"graphiql.min.js": "graphiql.min.js", "graphiql.min.css": "graphiql.min.css"},
    ),
]


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch(package: Package, workdir: Path) -> tarfile.TarFile:
    spec = f"{package.name}@{package.version}"
    out = subprocess.run(
        ["npm", "pack", spec, "--silent", "--pack-destination", str(workdir)],
        check=True, capture_output=True, text=True, cwd=workdir,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    tarball = (workdir / out).read_bytes()
    if sri(tarball) != package.integrity:
        raise SystemExit(f"vendor: {spec}: integrity mismatch ({sri(tarball)})")
    return tarfile.open(workdir / out)


def contents(package: Package, archive: tarfile.TarFile) -> dict[str, bytes]:
    """File name under vendor/<folder>/ -> bytes: the listed files, LICENSE and VERSION."""
    wanted = {**package.files, package.license: "LICENSE"}
    found = {"VERSION": f"{package.name}@{package.version}\n".encode()}
    for source, target in wanted.items():
        member = archive.extractfile(f"package/{source}")
        if member is None:
            raise SystemExit(f"vendor: {package.name}: {source} is not a file")
        found[target] = member.read()
    return found


def differing(folder: Path, files: dict[str, bytes]) -> list[str]:
    return [
        str(folder / name)
        for name, data in files.items()
        if not (folder / name).is_file() or (folder / name).read_bytes() != data
    ]


def write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args()
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for package in PACKAGES:
            with fetch(package, Path(tmp)) as archive:
                files = contents(package, archive)
            folder = VENDOR / package.folder
            if args.check:
                stale += differing(folder, files)
            else:
                write(folder, files)
            sys.stdout.write(f"{package.name}@{package.version}: integrity ok\n")
    if stale:
        sys.stderr.write("vendor: out of date: " + ", ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
