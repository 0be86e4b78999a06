"""The demo's FastAPI app: ``create_app(...)``.

- ``GET /``: the page (``static/``). Nothing comes from the internet: no fonts, scripts, styles or analytics, and
  its Content-Security-Policy lets the browser load from this server only.
- ``POST /api/inpaint``: multipart ``image`` + ``mask`` (+ ``model``, ``method``) -> the result as PNG, the photo's
  size, only hole pixels changed. ``method=telea`` or ``ns`` gives OpenCV's fill of the same mask.
- ``GET /api/models``, ``GET /api/examples`` (+ ``/api/examples/{name}``: the photo), ``GET /api/health``.
- OpenAPI docs at ``/docs`` (Swagger UI) and ``/redoc``, their files served from here too (fastapi-offline).

Every bad request gets a 4xx whose JSON ``detail`` is one line naming the field and what was expected (413 for
a file or an image over the limits, 404 for an unknown model, 422 for the rest); the server keeps serving. At
most ``max_jobs`` requests decode and fill at once (the others wait, their uploads spooled to disk by the
multipart parser), and each model is called by one request at a time (``registry``), so memory stays bounded
under any load. Per request too: both files' headers are checked before any pixel is decoded (the pixel limit,
every frame of an animation counted, and a mask that cannot be the photo's size), the fill's windows and model
calls are bounded by the photo (``Inpainter.plan``), and a fill whose client disconnected stops before its next
window (499), freeing the model.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route parameters' annotations at run time.
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import anyio
import numpy as np
import torch
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctx_inpaint import __version__
from ctx_inpaint.data.images import decode_rgb, describe_pixels, image_info
from ctx_inpaint.data.images import max_pixels as default_max_pixels
from ctx_inpaint.errors import InputError, UserError, one_line
from ctx_inpaint.inference.demo.examples import example_photos
from ctx_inpaint.inference.demo.guard import OriginGuard
from ctx_inpaint.inference.demo.registry import ModelLoadError, ModelRegistry, UnknownModelError
from ctx_inpaint.inference.inpainter import Cancelled, mask_to_bool
from ctx_inpaint.masks.fills import opencv_uint8

STATIC = Path(__file__).resolve().parent / "static"
METHODS = ("model", "telea", "ns")
METHOD_TITLES = {"telea": "OpenCV Telea", "ns": "OpenCV Navier-Stokes"}
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_JOBS = 2
CLIENT_GONE = 499  # nginx's "client closed request": what a stopped fill answers, to nobody
# The page's policy: this server only (results are blob: URLs, the empty favicon a data: URL).
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self' blob:; script-src 'self'; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# What a missing or malformed field should have been (the 422 lines of FastAPI's own validation).
EXPECTED = {
    "image": "an image file (multipart field 'image')",
    "mask": "a mask image of the photo's size (multipart field 'mask'; white = hole)",
    "model": "a model name from GET /api/models",
    "method": "one of " + ", ".join(METHODS),
}


class ErrorDetail(BaseModel):
    """Every 4xx: one line naming the field and what was expected."""

    detail: str


def _error(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=" ".join(str(message).split()))


class BodyLimit:
    """Refuse (413) an ``/api/`` request body over ``max_bytes`` as it arrives: from its Content-Length before
    anything is read, else once the bytes received pass it, so no upload is spooled to disk past the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_mb: float) -> None:
        self.app, self.max_bytes, self.max_upload_mb = app, max_bytes, max_upload_mb

    def _message(self, size: int | None) -> str:
        got = f" ({size / 2**20:.1f} MB)" if size is not None else ""
        return (
            f"request: the upload{got} is over the server's limit of {self.max_upload_mb:g} MB per file "
            "(--max-upload-mb); expected smaller files"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse({"detail": self._message(int(length))}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _error(413, self._message(None))  # raised inside the route's body parsing: a 413
            return message

        await self.app(scope, limited, send)


def create_app(
    models: dict[str, str] | None = None,
    *,
    device: torch.device | str | None = "cpu",
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int | None = None,
    max_jobs: int = DEFAULT_MAX_JOBS,
    registry: ModelRegistry | None = None,
    allow_hosts: tuple[str, ...] = (),
    allow_origins: tuple[str, ...] = (),
) -> FastAPI:
    """The demo app. ``models``: name -> shipped name or checkpoint path (default: ``freeform``, ``center``; the
    first is the default model); ``max_upload_mb``: per uploaded file; ``max_pixels``: per image (default
    ``CTX_INPAINT_MAX_PIXELS`` or 100 megapixels); ``max_jobs``: requests decoding and filling at once;
    ``allow_hosts``, ``allow_origins``: served besides this server's own names and page (``guard``)."""
    if not (isinstance(max_upload_mb, int | float) and max_upload_mb > 0):
        raise InputError(f"max_upload_mb: got {max_upload_mb!r}; expected a number of MB > 0")
    if not (isinstance(max_jobs, int) and max_jobs >= 1):
        raise InputError(f"max_jobs: got {max_jobs!r}; expected a whole number >= 1")
    registry = registry or ModelRegistry(models, device=device)
    pixel_limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    if pixel_limit < 1:
        raise InputError(f"max_pixels: got {max_pixels!r}; expected a positive number of pixels")
    file_limit = int(max_upload_mb * 2**20)
    jobs = threading.BoundedSemaphore(max_jobs)
    examples = example_photos()

    app = FastAPIOffline(
        title="ctx-inpaint demo",
        version=__version__,
        description=(
            "Context-encoder inpainting of your photos, beside OpenCV's Telea and Navier-Stokes fills. "
            "`POST /api/inpaint` with a photo and a mask (white = hole) returns the result as PNG; bad requests "
            "get a 4xx whose `detail` is one line."
        ),
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI's validator badge would call its website
    )
    app.state.registry = registry
    app.state.settings = {"max_upload_mb": max_upload_mb, "max_pixels": pixel_limit, "max_jobs": max_jobs}
    app.add_middleware(BodyLimit, max_bytes=2 * file_limit + 2**20, max_upload_mb=max_upload_mb)
    # Added last, so outermost: a request from another site is refused before its body is read.
    app.add_middleware(OriginGuard, allow_hosts=allow_hosts, allow_origins=allow_origins)

    @app.exception_handler(RequestValidationError)
    async def one_line_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "form")]
        field = ".".join(where) or "request"
        if err.get("type") == "missing":
            message = f"{field}: missing; expected {EXPECTED.get(field, 'a value')}"
        else:
            message = f"{field}: {err.get('msg', 'invalid')}; expected {EXPECTED.get(field, 'a valid value')}"
        return JSONResponse({"detail": " ".join(message.split())}, status_code=422)

    errors = {
        404: {"model": ErrorDetail, "description": "unknown model"},
        413: {
            "model": ErrorDetail,
            "description": "a file over --max-upload-mb or an image over --max-pixels",
        },
        422: {"model": ErrorDetail, "description": "not an image, a mask of another size or with no hole..."},
        503: {"model": ErrorDetail, "description": "the model's file could not be loaded"},
    }

    @app.post(
        "/api/inpaint",
        response_class=Response,
        summary="Inpaint a photo (or fill it with OpenCV)",
        responses={
            200: {
                "content": {"image/png": {}},
                "description": "the result as PNG, the photo's size: only hole pixels differ from the photo. "
                "Headers: X-Inpaint-Method, X-Inpaint-Model, X-Inpaint-Seconds (the fill alone), X-Hole-Pixels.",
            },
            **errors,
        },
    )
    def inpaint(
        request: Request,
        image: Annotated[
            UploadFile,
            File(description="the photo, any size: PNG, JPEG, WebP, BMP, TIFF, GIF (first frame)..."),
        ],
        mask: Annotated[
            UploadFile,
            File(
                description="the hole: an image of the photo's size, white (> 127) where it should be filled"
            ),
        ],
        model: Annotated[
            str, Form(description="a model name from GET /api/models (default: the server's first)")
        ] = registry.default,
        method: Annotated[
            Literal["model", "telea", "ns"],
            Form(description="model: the network; telea, ns: OpenCV's fill of the same mask"),
        ] = "model",
    ) -> Response:
        try:
            registry.get(model)
        except UnknownModelError as err:
            raise _error(404, str(err)) from None
        with jobs:  # bounded: uploads wait here on disk, not decoded in memory
            image_data = _read(image, "image", file_limit, max_upload_mb)
            mask_data = _read(mask, "mask", file_limit, max_upload_mb)
            # Both headers before any pixel: a mask that cannot fit the photo is refused undecoded.
            image_header = _check_header(image_data, "image", pixel_limit)
            mask_header = _check_header(mask_data, "mask", pixel_limit)
            _check_sizes(image_header, mask_header)
            photo = _decode(image_data, "image", pixel_limit)
            hole = _decode_mask(mask_data, photo, pixel_limit)
            try:
                if method == "model":
                    filled, seconds = registry.inpaint(model, photo, hole, should_stop=_client_gone(request))
                    out = filled.permute(1, 2, 0).numpy()
                else:
                    start = time.perf_counter()
                    out = opencv_uint8(
                        np.ascontiguousarray(photo.permute(1, 2, 0).numpy()), hole.numpy(), method
                    )
                    seconds = time.perf_counter() - start
            except Cancelled:  # nobody is waiting for the answer; the model is free for the next request
                raise _error(
                    CLIENT_GONE, "request: the client disconnected; the fill was stopped (expected nothing)"
                ) from None
            except ModelLoadError as err:
                raise _error(503, str(err)) from None
            except UserError as err:
                raise _error(422, one_line(err)) from None
            png = encode_png(out)
        return Response(
            png,
            media_type="image/png",
            headers={
                "X-Inpaint-Method": method,
                "X-Inpaint-Model": model if method == "model" else METHOD_TITLES[method],
                "X-Inpaint-Seconds": f"{seconds:.3f}",
                "X-Hole-Pixels": str(int(hole.sum())),
                "Content-Disposition": f'inline; filename="inpainted_{model if method == "model" else method}.png"',
            },
        )

    @app.get("/api/models", summary="The models this server holds (the first is the default)")
    def list_models() -> dict:
        return {"default": registry.default, "models": registry.describe(), "methods": list(METHODS)}

    @app.get("/api/examples", summary="The embedded example photos (held out from training)")
    def list_examples() -> dict:
        return {
            "examples": [
                {"name": n, "title": e["title"], "width": e["width"], "height": e["height"]}
                for n, e in examples.items()
            ]
        }

    @app.get(
        "/api/examples/{name}",
        response_class=FileResponse,
        summary="One example photo (PNG)",
        responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorDetail}},
    )
    def get_example(name: str) -> FileResponse:
        if name not in examples:
            raise _error(404, f"name: unknown example {name!r}; expected one of GET /api/examples")
        return FileResponse(examples[name]["path"], media_type="image/png")

    @app.get("/api/health", summary="Liveness and settings")
    def health() -> dict:
        return {"status": "ok", "models": registry.names(), **app.state.settings}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _read(upload: UploadFile, name: str, limit: int, limit_mb: float) -> bytes:
    """The uploaded file's bytes, refused (413) past ``limit`` without reading them all."""
    size = getattr(upload, "size", None)
    if size is None or size <= limit:
        upload.file.seek(0)
        data = upload.file.read(limit + 1)
        size = len(data)
    if size > limit:
        raise _error(
            413,
            f"{name}: the file is {size / 2**20:.1f} MB, over the server's limit of {limit_mb:g} MB "
            "(--max-upload-mb); expected a smaller file",
        )
    return data


def _check_header(data: bytes, name: str, pixel_limit: int) -> tuple[int, int] | None:
    """(width, height) from the file's header, nothing decoded: an empty file is refused (422), and so is (413)
    a header claiming more than ``pixel_limit`` pixels (a decompression bomb; an animation counts every
    frame). ``None`` when the format is not known from a header (the decoder then says what is wrong)."""
    if not data:
        raise _error(422, f"{name}: the file is empty; expected {EXPECTED[name]}")
    info = image_info(data)
    if info is None:
        return None
    what, pixels = describe_pixels(*info)
    if pixels > pixel_limit:
        raise _error(
            413,
            f"{name}: {what} is {pixels:,} pixels, over the server's limit of {pixel_limit:,} "
            "(--max-pixels or CTX_INPAINT_MAX_PIXELS); expected a smaller image",
        )
    return info[0], info[1]


def _check_sizes(image: tuple[int, int] | None, mask: tuple[int, int] | None) -> None:
    """Refuse (422) a mask whose header size cannot be the photo's, before either is decoded (a 9000x9000 mask
    for a 320x240 photo was decoded first, +750 MB). Either orientation passes here: EXIF may turn one of them,
    and the decoded sizes are compared again."""
    if image is None or mask is None or mask in (image, image[::-1]):
        return
    raise _error(
        422,
        f"mask: {mask[0]}x{mask[1]} differs from the image's {image[0]}x{image[1]}; "
        "expected a mask of the image's size",
    )


def _decode(data: bytes, name: str, pixel_limit: int) -> torch.Tensor:
    """(3, H, W) uint8, the way every reader of user images decodes (``decode_rgb``), once ``_check_header``
    passed its header."""
    try:
        return decode_rgb(data, name, pixel_limit)
    except UserError as err:
        raise _error(422, f"{one_line(err)}; expected {EXPECTED[name]}") from None


def _decode_mask(data: bytes, photo: torch.Tensor, pixel_limit: int) -> torch.Tensor:
    """(H, W) bool hole, read as the ``inpaint`` CLI reads mask files (grey level > 127 = hole)."""
    rgb = _decode(data, "mask", pixel_limit)
    hole = mask_to_bool(Image.fromarray(rgb.permute(1, 2, 0).numpy()))
    height, width = photo.shape[1:]
    if tuple(hole.shape) != (height, width):
        raise _error(
            422,
            f"mask: {hole.shape[1]}x{hole.shape[0]} differs from the image's {width}x{height}; "
            "expected a mask of the image's size",
        )
    if not bool(hole.any()):
        raise _error(
            422, "mask: no hole (no pixel is white, > 127); expected white where the photo should be filled"
        )
    return hole


def _client_gone(request: Request) -> Callable[[], bool]:
    """Whether the request's client has disconnected, asked from the worker thread that runs the route (the
    fill checks it before each window, so a request nobody waits for stops holding the model)."""

    def gone() -> bool:
        try:
            return bool(anyio.from_thread.run(request.is_disconnected))
        except RuntimeError:  # not in a worker thread of an event loop: nobody to ask
            return False

    return gone


def encode_png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (compression level 3: a large photo encodes in a fraction of the time of 6)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
