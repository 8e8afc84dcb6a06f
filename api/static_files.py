"""The files under api/assets/ (the dashboard, GraphiQL, vendored npm packages) at /assets/.

Each file answers at two URLs: its plain path, revalidated on every use
(`no-cache` with an ETag), and a fingerprinted one with the first characters of its
SHA-256 before the extension (`app/main.3f2a9c01bd.js`), cached for a year as
`immutable`: pages link the fingerprinted URLs, so a new release is new URLs. Files are
read (and gzipped once, when that makes them smaller) on first use and kept in memory:
they are the package's own, a few megabytes in all.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent / "assets"
PREFIX = "/assets/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
DIGEST_LENGTH = 10
_FINGERPRINTED = re.compile(
    rf"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{{{DIGEST_LENGTH}}})(?P<ext>\.[^./]+)$"
)
# mimetypes reads the system's tables, which may lack these or name them differently.
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


@dataclass(frozen=True, slots=True)
class Asset:
    path: str
    body: bytes
    gzipped: bytes | None
    media_type: str
    digest: str

    @property
    def url(self) -> str:
        """The fingerprinted URL."""
        path = PurePosixPath(self.path)
        if not path.suffix:
            return f"{PREFIX}{self.path}"
        return f"{PREFIX}{path.with_suffix('')}.{self.digest}{path.suffix}"


@functools.cache
def _files() -> frozenset[str]:
    return frozenset(p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file())


def asset(path: str) -> Asset | None:
    """The file at `path` under api/assets/, or None when there is none."""
    # Checked before the cache, which would otherwise keep every path a client made up.
    return _load(path) if path in _files() else None


@functools.cache
def _load(path: str) -> Asset:
    body = (ROOT / path).read_bytes()
    suffix = Path(path).suffix
    media_type = _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "text/plain"
    packed = gzip.compress(body, compresslevel=6, mtime=0)
    digest = hashlib.sha256(body).hexdigest()[:DIGEST_LENGTH]
    return Asset(path, body, packed if len(packed) < len(body) else None, media_type, digest)


def url(path: str) -> str:
    """The fingerprinted URL of the file at `path`; a missing file is a packaging bug."""
    found = asset(path)
    if found is None:
        raise LookupError(f"no asset {path!r} in {ROOT}")
    return found.url


def page(path: str, values: dict[str, str]) -> str:
    """The template at `path` with each `{{name}}` replaced by `values[name]`."""
    template = asset(path)
    if template is None:
        raise LookupError(f"no asset {path!r} in {ROOT}")
    html = template.body.decode()
    for name, value in values.items():
        html = html.replace("{{" + name + "}}", value)
    return html


def import_map(folder: str) -> dict[str, str]:
    """Plain URL -> fingerprinted URL of every module under `folder`, for an import map.

    Modules import each other by relative paths; the browser resolves those to plain URLs
    and the import map sends it to the fingerprinted ones.
    """
    modules = sorted(p for p in _files() if p.startswith(folder + "/") and p.endswith(".js"))
    return {PREFIX + path: url(path) for path in modules}


def _find(requested: str) -> tuple[Asset | None, bool]:
    """The asset a request path names, and whether it named it by fingerprint."""
    match = _FINGERPRINTED.match(requested)
    if match is not None:
        found = asset(match["stem"] + match["ext"])
        if found is not None and found.digest == match["digest"]:
            return found, True
    return asset(requested), False


def response(request: Request, found: Asset, *, cache_control: str) -> Response:
    """`found` for this request: gzipped when accepted, 304 when the client has it."""
    etag = f'"{found.digest}"'
    headers = {"Cache-Control": cache_control, "ETag": etag, "Vary": "Accept-Encoding"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = found.body
    if found.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body, headers["Content-Encoding"] = found.gzipped, "gzip"
    return Response(body, media_type=found.media_type, headers=headers)


async def serve_asset(request: Request) -> Response:
    found, fingerprinted = _find(request.path_params["path"])
    if found is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    return response(request, found, cache_control=IMMUTABLE if fingerprinted else REVALIDATE)


def asset_routes() -> list[Route]:
    return [Route(PREFIX + "{path:path}", serve_asset, methods=["GET", "HEAD"])]
