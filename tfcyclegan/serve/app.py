"""The web app: the page at /, its HTTP API under /v1, and /healthz (FastAPI; run by uvicorn).

    POST /v1/translate   an image in (multipart field `image`, JSON {"image": base64}, or the raw
                         bytes with an image/* Content-Type); model, chain, faces, format ->
                         the translated image as PNG (format=png) or JSON (format=json)
    GET  /v1/models      the loaded models (task, direction, domains, training step, sizes),
                         faces mode, and the limits below
    GET  /healthz        {"status": "ok", ...}: the pool's counts and this process's memory

Every error is JSON {"error": "<what is wrong, in words>"} with a 4xx or 5xx status:

    400  an empty body or image, a missing `image`, bad JSON or base64, an unknown model, a bad option
    408  an upload that took longer than Limits.upload_seconds
    413  an upload over the byte limit (refused from its Content-Length, before it is read, or as
         soon as a body without one passes the limit), or an image over the pixel limit
    415  not an image, or a Content-Type the API does not take
    422  an image that cannot be decoded, is smaller than 8x8 pixels, or shows no face (faces mode)
    501  faces mode, where the face pipeline is not installed
    503  every place in the pool taken (Retry-After: seconds)

An image whose longer side is over Limits.max_side is translated as a copy whose longer side is
max_side (a JPEG is decoded at a reduced scale: memory follows the copy, not the file).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import io as _io
import json
import logging
import time
import warnings
from importlib import resources
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from tfcyclegan.export import MIN_SIDE
from tfcyclegan.io import ImageError, ImageTooLargeError, NotAnImageError, read_image
from tfcyclegan.serve.face_mode import FaceMode, FacesUnavailableError, start_face_mode, translate_faces_in
from tfcyclegan.serve.models import ModelRegistry, ServedModel, UnknownModelError
from tfcyclegan.serve.pool import QueueFull, WorkerPool
from tfcyclegan.translate.files import translate_image

log = logging.getLogger("tfcyclegan.serve")

MB = 2**20
# The page may load only what this server sends it: no CDN, font or script from elsewhere.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
                           "connect-src 'self' blob:; style-src 'self'; script-src 'self'; object-src 'none'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
TRUE, FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no", "")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one server takes.

    max_upload_bytes: the largest request body. max_side: longer images are translated as a
    copy this long. max_pixels: images that would decode to more pixels are refused (after a
    JPEG's reduced-scale decoding). workers: translations at once; queue: requests waiting.
    upload_seconds: the longest an admitted request may take to send its body (a slow client
    holds a place in the pool while it sends).
    """

    max_upload_bytes: int = 20 * MB
    max_side: int = 1024
    max_pixels: int = 25_000_000
    workers: int = 1
    queue: int = 8
    upload_seconds: int = 60

    def __post_init__(self):
        for name, low in (("max_upload_bytes", 1), ("max_side", MIN_SIDE), ("max_pixels", MIN_SIDE * MIN_SIDE),
                          ("workers", 1), ("queue", 0), ("upload_seconds", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}. Received: {value!r}")

    def describe(self) -> dict:
        return dataclasses.asdict(self)


class ServeError(Exception):
    """A request the API refuses: status, and the message the client gets."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclasses.dataclass(frozen=True)
class Options:
    model: str | None
    chain: list[str]
    faces: bool
    format: str


@dataclasses.dataclass(frozen=True)
class Translated:
    png: bytes
    width: int
    height: int
    input_width: int
    input_height: int
    faces: dict | None
    seconds: float


# -- the request: where the image and the options are ---------------------------------------------


def _words(value: Any, field: str) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ServeError(400, f"{field!r} must be a model name or a comma-separated list of them. Received: {item!r}")
        out += [v.strip() for v in item.split(",") if v.strip()]
    return out


def _options(get, getlist, *, default_format: str) -> Options:
    """The options from a lookup (form fields, JSON keys, or the query string)."""
    model = get("model")
    if model is not None and not isinstance(model, str):
        raise ServeError(400, f"'model' must be a model name (GET /v1/models lists them). Received: {model!r}")
    faces = get("faces")
    if isinstance(faces, str) and faces.strip().lower() in TRUE + FALSE:
        faces = faces.strip().lower() in TRUE
    elif faces is None:
        faces = False
    elif not isinstance(faces, bool):
        raise ServeError(400, f"'faces' must be on or off (true/false). Received: {faces!r}")
    fmt = get("format") or default_format
    if fmt not in ("png", "json"):
        raise ServeError(400, f"'format' must be png or json. Received: {fmt!r}")
    return Options(model=(model.strip() or None) if model else None, chain=_words(getlist("chain"), "chain"),
                   faces=faces, format=fmt)


async def read_request(request: Request) -> tuple[bytes, Options]:
    """(the image's bytes, the options). The body was already bounded by UploadLimit."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    query = request.query_params

    def from_query(default_format: str) -> Options:
        return _options(query.get, query.getlist, default_format=default_format)

    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=16)
        except StarletteHTTPException:
            raise
        except Exception as e:  # starlette's parser names what is wrong with the form
            raise ServeError(400, f"the multipart form cannot be read ({e})") from None
        try:
            image = form.get("image")
            if image is None:
                raise ServeError(400, "no 'image' field: send the photo as the multipart file field 'image'")
            if not isinstance(image, UploadFile):
                raise ServeError(400, "'image' must be a file (multipart file field), not a text field")
            data = await image.read()
            options = _options(lambda k: form.get(k, query.get(k)),
                               lambda k: form.getlist(k) or query.getlist(k), default_format="png")
        finally:
            await form.close()
    elif kind == "application/json":
        body = await request.body()
        if not body:
            raise ServeError(400, "empty request: the JSON body is missing")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise ServeError(400, f"the body is not valid JSON ({e})") from None
        del body
        if not isinstance(payload, dict):
            raise ServeError(400, 'the JSON body must be an object: {"image": "<base64>", "model": ...}')
        encoded = payload.pop("image", None)
        if not isinstance(encoded, str):
            raise ServeError(400, "no 'image' key: send the photo's bytes as a base64 string in 'image'")
        if encoded.startswith("data:") and "," in encoded:  # a data URL, as browsers write them
            encoded = encoded.split(",", 1)[1]
        try:
            data = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ServeError(400, "'image' is not valid base64") from None
        del encoded
        options = _options(lambda k: payload.get(k, query.get(k)),
                           lambda k: payload.get(k, query.getlist(k)), default_format="json")
    elif kind.startswith("image/") or kind == "application/octet-stream":
        data = await request.body()
        options = from_query("png")
    else:
        body = await request.body()
        if not body:
            raise ServeError(400, "empty request: send a photo as the multipart file field 'image', as JSON "
                                  '{"image": "<base64>"}, or as the body with an image/* Content-Type')
        raise ServeError(415, f"unsupported Content-Type {kind or '(none)'!r}: send multipart/form-data with an "
                              "'image' file, application/json with a base64 'image', or the bytes with image/*")
    if not data:
        raise ServeError(400, "the image is empty (0 bytes)")
    return data, options


# -- the work, in a pool thread ---------------------------------------------------------------------


def _stored_size(data: bytes) -> tuple[int, int]:
    """(width, height) as shown (EXIF orientation applied), from the header only."""
    from PIL import Image

    with Image.open(_io.BytesIO(data)) as image:
        width, height = image.size
        if image.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated a quarter turn
            width, height = height, width
    return width, height


def translate_bytes(data: bytes, models: Sequence[ServedModel], *, faces: bool, limits: Limits,
                    face_mode: FaceMode) -> Translated:
    """An uploaded image through the chain: bytes -> Translated (a PNG of uint8 (H, W, 3)).

    Raises ImageError (the image cannot be used), FacesUnavailableError."""
    start = time.perf_counter()
    # A SavedModel refuses images over its own max_side: the copy must fit every model of the chain.
    max_side = min([limits.max_side] + [m.max_side for m in models if m.max_side])
    image = read_image(data, max_side=max_side, shrink=True, max_pixels=limits.max_pixels, min_side=MIN_SIDE)
    input_width, input_height = _stored_size(data)
    steps = [m.translator for m in models]
    faces_info = None
    if faces:
        out, faces_info = translate_faces_in(image, steps, crop_size=models[0].crop_size, mode=face_mode)
    else:
        out = translate_image(image, steps)[-1]
    del image
    from PIL import Image

    buffer = _io.BytesIO()
    # Level 1: on a local server the encoding time matters more than the bytes it saves.
    Image.fromarray(out).save(buffer, format="PNG", compress_level=1)
    return Translated(buffer.getvalue(), out.shape[1], out.shape[0], input_width, input_height, faces_info,
                      time.perf_counter() - start)


def _status_of(error: ImageError) -> int:
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, NotAnImageError):
        return 415
    return 422


# -- the upload limit, before FastAPI reads anything ------------------------------------------------


class UploadLimit:
    """ASGI middleware: a request body over max_bytes gets 413 before it is read whole.

    A Content-Length over the limit is answered before a byte of the body is read; a body without
    one (chunked) is counted as it arrives and answered as soon as it passes the limit.

    Whenever an answer is complete while the client is still sending its body (a 413, a 503, a
    400 about a field), the rest of the body is read and dropped, keeping none of it, for at most
    LINGER_SECONDS and LINGER_BYTES, before the answer ends. A connection closed with unread
    data in it is reset, and a client that sends its whole body before it reads (urllib,
    requests) would see the reset, not the answer; a client that reads as it sends (curl, a
    browser) has the whole answer at once anyway.
    """

    LINGER_SECONDS = 5.0
    LINGER_BYTES = 256 * MB

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return (f"the upload is larger than this server's limit of {self.max_bytes / MB:g} MB "
                "(tfcyclegan-serve --max_upload_mb): send a smaller file")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"").strip()
        state = {"received": 0, "done": not (b"transfer-encoding" in headers or (length.isdigit() and int(length) > 0)),
                 "linger": True}

        async def counted():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
                if state["received"] > self.max_bytes:
                    raise StarletteHTTPException(413, self._message())
            else:
                state["done"] = True
            return message

        async def lingering_send(message):
            if message["type"] == "http.response.start":
                # An answer that closes the connection on purpose (a client too slow to upload) is not held open.
                state["linger"] = (b"connection", b"close") not in [(k.lower(), v.lower()) for k, v in message.get("headers", [])]
            if (message["type"] == "http.response.body" and not message.get("more_body", False) and not state["done"]
                    and state["linger"]):
                await send({**message, "more_body": True})
                await self._drop_the_rest(receive, state)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        if length.isdigit() and int(length) > self.max_bytes:
            return await JSONResponse({"error": self._message()}, status_code=413)(scope, receive, lingering_send)
        await self.app(scope, counted, lingering_send)

    async def _drop_the_rest(self, receive, state) -> None:
        loop = asyncio.get_running_loop()
        deadline, dropped = loop.time() + self.LINGER_SECONDS, 0
        while not state["done"] and dropped <= self.LINGER_BYTES and loop.time() < deadline:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                return
            dropped += len(message.get("body", b""))
            state["done"] = message["type"] != "http.request" or not message.get("more_body", False)


# -- the app ---------------------------------------------------------------------------------------


def _memory_mb() -> dict:
    """This process's resident memory now and at its peak, in MB (Linux /proc; {} elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
                "peak_rss_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}
    except (OSError, KeyError, ValueError):
        return {}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(registry: ModelRegistry, limits: Limits = Limits(), *, face_mode: FaceMode | None = None) -> FastAPI:
    """The app around loaded models. face_mode: None starts the face pipeline if it is installed."""
    from PIL import Image

    # read_image enforces limits.max_pixels itself; PIL's warning below its own bomb limit is noise here.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    face_mode = face_mode if face_mode is not None else start_face_mode()
    pool = WorkerPool(limits.workers, limits.queue)
    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and the app must work offline.

    @contextlib.asynccontextmanager
    async def lifespan(_):
        yield
        pool.shutdown()

    app = FastAPI(title="tfcyclegan", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.registry, app.state.limits, app.state.pool, app.state.face_mode = registry, limits, pool, face_mode
    app.add_middleware(UploadLimit, max_bytes=limits.max_upload_bytes)
    app.mount("/static", StaticFiles(packages=[("tfcyclegan.serve", "static")]), name="static")
    page = resources.files("tfcyclegan.serve").joinpath("static", "index.html").read_bytes()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, error: ServeError):
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, error: QueueFull):
        return _error(503, str(error), {"Retry-After": str(error.retry_after)})

    @app.get("/", include_in_schema=False)
    async def index():
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "models": len(registry), **pool.stats(), **_memory_mb()}

    @app.get("/v1/models")
    async def models():
        return {"models": registry.describe(), "faces": face_mode.describe(), "limits": limits.describe()}

    @app.post("/v1/translate")
    async def translate(request: Request):
        if request.headers.get("content-length", "").strip() == "0":
            raise ServeError(400, "empty request: send a photo as the multipart file field 'image', as JSON "
                                  '{"image": "<base64>"}, or as the body with an image/* Content-Type')
        ticket = pool.admit()  # before the body is read: only admitted requests hold an upload
        try:
            try:
                data, options = await asyncio.wait_for(read_request(request), limits.upload_seconds)
            except asyncio.TimeoutError:
                raise ServeError(408, f"the upload took longer than {limits.upload_seconds} s: send it again, or a "
                                      "smaller file", {"Connection": "close"}) from None
            try:
                chosen = registry.resolve(options.model, options.chain)
            except UnknownModelError as e:
                raise ServeError(400, str(e)) from None
            if options.faces and not face_mode.available:
                raise ServeError(501, face_mode.reason or "faces mode is unavailable")
            job = lambda: translate_bytes(data, chosen, faces=options.faces, limits=limits, face_mode=face_mode)  # noqa: E731
            try:
                result = await ticket.run(job)
            except ImageError as e:
                raise ServeError(_status_of(e), f"the image cannot be used: {e}") from None
            except FacesUnavailableError as e:
                raise ServeError(501, str(e)) from None
            except Exception as e:  # the server stays up; the client and the log get the reason
                log.exception("translation failed")
                raise ServeError(500, f"the translation failed ({type(e).__name__}: {str(e).strip()[:300]})") from None
        finally:
            ticket.close()
        names = [m.name for m in chosen]
        resized = (result.width, result.height) != (result.input_width, result.input_height)
        if options.format == "json":
            return {"image": base64.b64encode(result.png).decode("ascii"), "media_type": "image/png",
                    "width": result.width, "height": result.height, "models": names, "faces": result.faces,
                    "input": {"width": result.input_width, "height": result.input_height, "resized": resized},
                    "seconds": round(result.seconds, 4)}
        headers = {"X-Models": ",".join(names), "X-Input-Size": f"{result.input_width}x{result.input_height}",
                   "X-Output-Size": f"{result.width}x{result.height}", "X-Resized": str(resized).lower(),
                   "X-Seconds": f"{result.seconds:.4f}", "Content-Disposition": 'inline; filename="translated.png"'}
        if result.faces is not None:
            headers["X-Faces"] = str(result.faces["count"])
        return Response(result.png, media_type="image/png", headers=headers)

    return app

