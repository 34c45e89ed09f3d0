"""`podium serve RUN|EXPORT_DIR`: an HTTP server (FastAPI + uvicorn) over the run's ONNX export.

  POST /predict   one or many images: multipart files (any field name), or one image as the raw body; answers JSON,
                  per image its top-k classes and probabilities and the task's decision (podium.ship.runtime.decide)
  GET  /health    liveness and counters (no token needed: load balancers ask it)
  GET  /model     the export's manifest.json
  GET  /docs      the OpenAPI page

Images are read as `podium predict` reads them: podium.ship.runtime.to_array (podium's modes, EXIF, alpha), then
podium.data.images' centre crop and resize (OpenCV), so answers equal podium predict's probabilities. Concurrent
requests are micro-batched: a single worker gathers the images that arrive within MAX_WAIT of each other (up to
max_batch) into one ONNX Runtime call. Every refusal is a 4xx with a JSON `detail`, checked in this order: token,
body size (Content-Length, then the bytes actually read), images per request, format and pixel count from the
header before any decoding (decompression bombs), then the decode itself.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request, imported lazily
# inside create_app) as objects
import asyncio
import hmac
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from podium.data.images import crop_center, fit_image
from podium.errors import PodiumError
from podium.run.rundir import RunDir
from podium.ship.manifest import MANIFEST
from podium.ship.runtime import Model, decide, to_array

MAX_WAIT = 0.005  # seconds a batch waits for more requests: ~ one small CNN's batch on a CPU core


@dataclass(frozen=True)
class Limits:
    """What one request may hold; beyond it the answer is a 4xx naming the limit."""

    max_body: int = 20 * 1024 * 1024  # bytes (413)
    max_pixels: int = 50_000_000  # width x height per image, read from the header before decoding (413)
    max_images: int = 64  # images per request (413)
    formats: tuple[str, ...] = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM", "MPO")  # PIL's names (415)


class Refused(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def resolve_export(target: Path) -> Path:
    """An export folder as given, or a run's export (`podium export` writes it first when the run has none)."""
    target = Path(target)
    if (target / MANIFEST).is_file():
        return target
    rd = RunDir(target)
    rd.load_config()  # a run folder, or a clear error
    if not (rd.export_dir / MANIFEST).is_file():
        from podium.ship.export import export_run  # PyTorch, only to export a run that has no export yet

        export_run(target)
    return rd.export_dir


def read_upload(data: bytes, manifest: dict, limits: Limits) -> np.ndarray:
    """One uploaded file as the graph's input (H x W x C uint8 at the input size), or Refused."""
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:  # PIL's own limit, far above ours
        raise Refused(413, f"image refused before decoding: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise Refused(415, f"not an image in a known format (accepted: {', '.join(limits.formats)})") from None
    with img:
        if img.format not in limits.formats:
            raise Refused(415, f"image format {img.format} is not accepted (accepted: {', '.join(limits.formats)})")
        w, h = img.size
        if w * h > limits.max_pixels:
            raise Refused(413, f"image is {w}x{h} = {w * h} pixels, over the limit of {limits.max_pixels} (checked "
                               "from its header, before decoding)")
        try:
            img.load()
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on damaged data
            kind = "truncated" if "truncat" in str(exc).lower() else "damaged"
            raise Refused(400, f"the image is {kind} and cannot be decoded ({type(exc).__name__}: {exc})") from None
        arr = to_array(img, manifest["input"]["channels"])
    spec = manifest["input"]
    try:
        return fit_image(crop_center(arr, spec["center_crop"]), spec["size"], spec["resize"])
    except ValueError as exc:  # resize=keep and another size
        raise Refused(422, f"the image {exc}") from None


class MicroBatcher:
    """Gathers concurrent requests' images into one model call (one at a time, off the event loop)."""

    def __init__(self, model: Model, max_batch: int = 32, max_wait: float = MAX_WAIT):
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.batches = self.images = 0

    async def predict(self, images: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((images, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n, deadline = len(items[0][0]), loop.time() + self.max_wait
            while n < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
                n += len(items[-1][0])
            batch = np.concatenate([images for images, _ in items])
            try:
                probs = await loop.run_in_executor(None, self.model.probs, batch, len(batch))
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the loop goes on
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches, self.images = self.batches + 1, self.images + len(batch)
            start = 0
            for images, future in items:
                if not future.done():
                    future.set_result(probs[start:start + len(images)])
                start += len(images)


_UPLOAD_DOC = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}


def create_app(export_dir: Path, token: str | None = None, limits: Limits = Limits(), top_k: int = 5,
               max_batch: int = 32, threads: int | None = None):
    """The FastAPI app over `export_dir` (model.onnx + manifest.json)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    # the server's own pixel limit (Limits.max_pixels, read from the header) replaces PIL's process-wide one, so a
    # bomb is refused with its size named, at any limit the user sets
    Image.MAX_IMAGE_PIXELS = None
    model = Model(export_dir, threads=threads)
    manifest = model.manifest
    batcher = MicroBatcher(model, max_batch=max_batch)
    stats = {"requests": 0, "refused": 0, "started": time.time()}

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title=f"podium: {manifest['run']['name']}", lifespan=lifespan,
                  description=f"{manifest['run']['model']}, {manifest['task']['kind']}, "
                              f"{len(manifest['output']['columns'])} outputs; docs/shipping.md")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        stats["refused"] += 1
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    def authorise(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer "):
            raise Refused(401, "missing bearer token: send the header 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given[len("Bearer "):].encode(), token.encode()):
            raise Refused(401, "wrong bearer token")

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body:
            raise Refused(413, f"request body of {declared} bytes is over the limit of {limits.max_body}")
        chunks, size = [], 0
        async for chunk in request.stream():  # a body without Content-Length (chunked) is counted as it comes
            size += len(chunk)
            if size > limits.max_body:
                raise Refused(413, f"request body is over the limit of {limits.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def uploads(request: Request) -> list[tuple[str, bytes]]:
        data = await body(request)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return [("body", data)] if data else []
        request._body = data  # starlette parses the form from the bytes already read and counted
        try:
            form = await request.form(max_files=limits.max_images + 1, max_fields=limits.max_images + 1)
        except Exception as exc:  # noqa: BLE001 - starlette's parser errors on a broken or oversized form
            if "too many" in str(exc).lower():
                raise Refused(413, f"over the limit of {limits.max_images} images per request ({exc})") from None
            raise Refused(400, f"cannot read the multipart form: {exc}") from None
        files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if hasattr(v, "read")]
        return files

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": manifest["run"]["name"], "requests": stats["requests"],
                "refused": stats["refused"], "batches": batcher.batches, "images": batcher.images,
                "uptime_s": round(time.time() - stats["started"], 1)}

    @app.get("/model")
    async def model_manifest(request: Request):
        authorise(request)
        return manifest

    @app.post("/predict", openapi_extra=_UPLOAD_DOC)
    async def predict(request: Request):
        """Top-k classes and probabilities (and the task's decision) for each image sent."""
        stats["requests"] += 1
        authorise(request)
        files = await uploads(request)
        if not files:
            raise Refused(400, "no image in the request: send multipart files or the image as the body")
        if len(files) > limits.max_images:
            raise Refused(413, f"{len(files)} images in one request, over the limit of {limits.max_images}")
        images = []
        for name, data in files:
            try:
                images.append(await run_in_threadpool(read_upload, data, manifest, limits))
            except Refused as exc:
                raise Refused(exc.status, f"'{name}': {exc.detail}") from None
        probs = await batcher.predict(np.stack(images))
        rows = decide(probs, manifest, top_k)
        return {"predictions": [{"name": name, **row} for (name, _), row in zip(files, rows)]}

    return app


def serve(target: Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          limits: Limits = Limits(), top_k: int = 5, max_batch: int = 32, threads: int | None = None) -> None:
    """Serve RUN's export (written first if missing) or an export folder until interrupted."""
    import uvicorn

    if port < 0 or port > 65535:
        raise PodiumError(f"--port {port} is not a TCP port (0-65535).")
    app = create_app(resolve_export(target), token, limits, top_k, max_batch, threads)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
