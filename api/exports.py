"""GET /exports/{id}.csv: a usage export's file, behind the signed URL createUsageExport gave.

No bearer token: the URL's signature is the credential, checked before anything is looked
up. Refusals are `{"error": {"code", "message"}}` like the webhooks': 403 INVALID_SIGNATURE
(a missing, changed or foreign signature), 410 EXPIRED, 404 NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from api.settings import Settings
from services.errors import NotFound
from services.exports import BadSignature, ExportExpired, open_export
from services.runtime import Runtime

# Lines are sent in chunks of about this many bytes: few sends, bounded memory.
CHUNK_BYTES = 64 * 1024


def export_routes(settings: Settings, runtime: Runtime) -> list[Route]:
    """GET /exports/{id}.csv."""
    return [Route("/exports/{export_id}.csv", _download(settings, runtime), methods=["GET"])]


def _download(settings: Settings, runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    async def download(request: Request) -> Response:
        try:
            file = await open_export(
                export_id=request.path_params["export_id"],
                expires=request.query_params.get("expires"),
                signature=request.query_params.get("signature"),
                secret=settings.secret_key,
                clock=runtime.clock,
            )
        except BadSignature as error:
            return _refusal(403, "INVALID_SIGNATURE", str(error))
        except ExportExpired as error:
            return _refusal(410, "EXPIRED", str(error))
        except NotFound as error:
            return _refusal(404, error.code, error.message)
        headers = {
            "Content-Disposition": f'attachment; filename="{file.filename}"',
            # The URL is a credential: no shared cache may keep the file.
            "Cache-Control": "private, no-store",
        }
        return StreamingResponse(
            _chunks(file.lines), media_type="text/csv; charset=utf-8", headers=headers
        )

    return download


async def _chunks(lines: Iterator[str]) -> AsyncIterator[bytes]:
    """The lines as UTF-8, about CHUNK_BYTES at a time (an async iterator: no thread per line)."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(chunk).encode()
            chunk, size = [], 0
    if chunk:
        yield "".join(chunk).encode()


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
