"""A local web page for `localize`: upload an image and a sound, or a video; see the map.

    pip install -e '.[serve]'
    python -m avkd_jax.serve --checkpoint=runs/synthetic_demo
    python -m avkd_jax.serve --checkpoint=runs/synthetic_demo --port=8808 --host=127.0.0.1 \
        --max_upload_mb=50 --max_seconds=60 --object_npz=resnet18.npz

then open http://127.0.0.1:8808/. The run is loaded once at start-up; every upload goes
through `localize`'s own readers and map (the same pixels and samples evaluation sees),
one at a time, off the event loop. `POST /localize` (multipart: `image` + `audio`, or
`video`; `variant`) answers JSON: the overlay PNG (base64), the 224 × 224 map (base64
float32) and its peak; a bad upload gets HTTP 400 (413 when too large) and `{"error"}`,
which the page shows. A video gives its middle frame's map and the clip rendered over time
(`localize_video`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import html
import io
import os
import tempfile
import threading

try:
    import python_multipart  # noqa: F401  (Starlette's form parser)
    import uvicorn
    from starlette.applications import Starlette
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route
except ImportError as e:
    raise ImportError(
        f"avkd_jax.serve needs starlette, uvicorn and python-multipart ({e}): "
        "pip install -e '.[serve]'"
    ) from None

import numpy as np
from absl import app, flags, logging
from PIL import Image

from avkd_jax import localize, localize_video, pictures
from avkd_jax.errors import MediaError, RunError
from avkd_jax.eval import diagnostics, fusion

FIELDS = ("image", "audio", "video")


class UploadError(ValueError):
    """An upload the page answers with a message and HTTP `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_seconds: float


def _seconds(path: str, kind: str) -> float | None:
    """The length of a sound or video, None when its header does not say (the readers then
    report what is wrong with the file)."""
    try:
        if kind == "audio":
            import soundfile as sf  # pylint: disable=g-import-not-at-top

            info = sf.info(path)
            return info.frames / info.samplerate if info.samplerate else None
        import av  # pylint: disable=g-import-not-at-top

        with av.open(path) as container:
            return container.duration / 1e6 if container.duration else None
    except Exception:  # pylint: disable=broad-except
        return None


def png_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class Localizer:
    """The run loaded once; one upload at a time through `localize`'s readers and map."""

    def __init__(self, run: localize.Run, object_npz: str | None = None):
        self.run = run
        self.lock = threading.Lock()
        self.objects, self.unavailable = None, {}
        try:
            self.objects = localize.object_model(run, object_npz)
        except (RunError, ValueError, FileNotFoundError) as e:
            self.unavailable[fusion.OG] = str(e)
        self.variants = [v for v in localize.VARIANTS if v not in self.unavailable]

    def check_variant(self, variant: str) -> None:
        if variant not in localize.VARIANTS:
            raise UploadError(f"variant {variant!r}: expected one of {', '.join(self.variants)}")
        if variant in self.unavailable:
            raise UploadError(f"variant {variant} is not available: {self.unavailable[variant]}")

    def picture_map(self, picture: str, sound: str, from_video: bool, variant: str) -> dict:
        """The overlay and map of a picture + sound (a video's middle frame and sound)."""
        native, stored = localize.read_picture(picture, from_video)
        pcm = localize.read_sound(sound, from_video, self.run.config)
        image = localize.model_image(stored, self.run.config.image_size)
        with self.lock:
            heat = localize.localization_map(self.run, image, pcm, variant, self.objects)
        iy, ix = diagnostics.peak_cell(heat)
        return {
            "overlay": base64.b64encode(png_bytes(pictures.overlay(native, heat))).decode(),
            "map": base64.b64encode(np.ascontiguousarray(heat, "<f4").tobytes()).decode(),
            "map_shape": list(heat.shape),
            # The peak's cell centre, relative to the picture (x right, y down).
            "peak": {
                "x": float((ix + 0.5) / heat.shape[1]),
                "y": float((iy + 0.5) / heat.shape[0]),
            },
            "size": {"width": native.shape[1], "height": native.shape[0]},
            "variant": variant,
            "step": int(self.run.step),
        }

    def video(self, path: str, variant: str) -> dict:
        """The middle frame's map, and the clip rendered over time (`localize_video`)."""
        result = self.picture_map(path, path, True, variant)
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "clip.mp4")
            with self.lock:
                written = localize_video.render(
                    self.run, path, out, variant=variant, progress=False
                )
            with open(written["mp4"], "rb") as f:
                result["mp4"] = base64.b64encode(f.read()).decode()
        return result


async def _upload(form, field: str, folder: str, limits: Limits) -> str | None:
    """The uploaded file of `field` written under `folder` by its own name; None if absent."""
    item = form.get(field)
    if item is None or isinstance(item, str):
        if item:
            raise UploadError(f"field {field!r} must be a file upload, not text")
        return None
    data = await item.read()
    name = os.path.basename(item.filename or "") or field
    if not data:
        if item.filename:
            raise UploadError(f"{field} ({name}): the file is empty")
        return None  # A form's file input left empty.
    path = os.path.join(folder, field, name)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(data)
    if field != "image":
        seconds = _seconds(path, field)
        if seconds is not None and seconds > limits.max_seconds:
            raise UploadError(
                f"{field} ({name}): {seconds:.1f} s is longer than the {limits.max_seconds:g} s "
                "limit (--max_seconds)"
            )
    return path


def _mb(n: int) -> str:
    return f"{n / 2**20:.3g}"


def _inputs(paths: dict) -> str:
    """'picture' (image + audio) or 'video'; a clear error when a field is missing."""
    if paths["video"] and (paths["image"] or paths["audio"]):
        raise UploadError("give an image and a sound, or a video, not both")
    if paths["video"]:
        return "video"
    missing = [f for f in ("image", "audio") if not paths[f]]
    if missing:
        raise UploadError(
            f"missing field {' and '.join(repr(m) for m in missing)}: "
            "give an image and a sound, or a video"
        )
    return "picture"


def _media_message(error: MediaError, paths: dict) -> str:
    """A reader's error, naming the form field and the file as uploaded."""
    for field, path in paths.items():
        if path and os.path.abspath(path) == os.path.abspath(error.path):
            return f"{field} ({os.path.basename(path)}): {error.reason}"
    return str(error)


def create_app(localizer: Localizer, limits: Limits) -> Starlette:
    async def index(request: Request):
        del request
        return HTMLResponse(page(localizer.variants, limits))

    async def localize_upload(request: Request):
        length = request.headers.get("content-length", "")
        if not length.isdigit():  # Browsers and curl send it; it bounds what is read.
            return _error("the upload has no Content-Length header", 411)
        if int(length) > limits.max_bytes:
            return _error(
                f"upload of {_mb(int(length))} MB: larger than the {_mb(limits.max_bytes)} MB "
                "limit (--max_upload_mb)",
                413,
            )
        try:
            form = await request.form(max_files=3, max_fields=8, max_part_size=1024)
        except MultiPartException as e:
            return _error(f"upload rejected: {e}")
        try:
            with tempfile.TemporaryDirectory() as folder:
                paths = {f: await _upload(form, f, folder, limits) for f in FIELDS}
                variant = str(form.get("variant") or fusion.STUDENT)
                localizer.check_variant(variant)
                kind = _inputs(paths)
                try:
                    if kind == "video":
                        job = localizer.video, paths["video"], variant
                    else:
                        job = localizer.picture_map, paths["image"], paths["audio"], False, variant
                    result = await asyncio.to_thread(*job)
                except MediaError as e:
                    raise UploadError(_media_message(e, paths)) from None
        except UploadError as e:
            return _error(str(e), e.status)
        finally:
            await form.close()
        return JSONResponse(result)

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/localize", localize_upload, methods=["POST"]),
        ]
    )


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def page(variants, limits: Limits) -> str:
    """The one page: a form, and the result drawn by its script (no external assets)."""
    options = "".join(
        f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in variants
    )
    limit = f"up to {_mb(limits.max_bytes)} MB an upload, sounds and videos up to {limits.max_seconds:g} s"
    return PAGE.replace("{{options}}", options).replace("{{limit}}", html.escape(limit))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>avkd-jax: where is the sound?</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222;max-width:64em}
h1{font-size:1.3em;margin:0 0 .6em}
fieldset{border:1px solid #ccc;border-radius:6px;margin:0 0 .7em;padding:.5em .9em}
label{display:inline-block;min-width:5em}
button{font-size:1em;padding:.3em 1.2em}
#error{color:#b00;font-weight:bold;white-space:pre-wrap}
#result img,#result video{max-height:26em;border:1px solid #999;display:block}
#figure{position:relative;display:inline-block;margin-right:1em;vertical-align:top}
#marker{position:absolute;width:14px;height:14px;margin:-9px 0 0 -9px;border:2px solid #fff;
border-radius:50%;box-shadow:0 0 0 2px #000;pointer-events:none}
.small{color:#666;font-size:.85em}
</style></head><body>
<h1>Where is the sound?</h1>
<form id="form">
<fieldset><legend>An image and a sound</legend>
<label for="image">image</label> <input type="file" id="image" name="image" accept="image/*"><br>
<label for="audio">sound</label> <input type="file" id="audio" name="audio" accept="audio/*">
</fieldset>
<fieldset><legend>or a video</legend>
<label for="video">video</label> <input type="file" id="video" name="video" accept="video/*">
</fieldset>
<label for="variant">variant</label> <select id="variant" name="variant">{{options}}</select>
<button type="submit" id="submit">Localize</button>
<span class="small">{{limit}}</span>
</form>
<p id="status" class="small"></p>
<p id="error"></p>
<div id="result" data-state="empty"></div>
<script>
const form = document.getElementById("form");
const result = document.getElementById("result");
const error = document.getElementById("error");
const status = document.getElementById("status");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = ""; result.innerHTML = ""; result.dataset.state = "busy";
  status.textContent = "localizing...";
  const data = new FormData();
  for (const name of ["image", "audio", "video"]) {
    const input = document.getElementById(name);
    if (input.files.length) data.append(name, input.files[0]);
  }
  data.append("variant", document.getElementById("variant").value);
  let answer;
  try {
    const response = await fetch("localize", {method: "POST", body: data});
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
  } catch (e) {
    status.textContent = ""; error.textContent = "error: " + e.message;
    result.dataset.state = "error"; return;
  }
  status.textContent = answer.variant + " map, checkpoint step " + answer.step +
    "; peak at x=" + answer.peak.x.toFixed(3) + ", y=" + answer.peak.y.toFixed(3) +
    " of the picture" + (answer.note ? " (" + answer.note + ")" : "");
  const figure = document.createElement("div");
  figure.id = "figure";
  const img = document.createElement("img");
  img.id = "overlay"; img.alt = "the map over the picture";
  img.src = "data:image/png;base64," + answer.overlay;
  const marker = document.createElement("div");
  marker.id = "marker"; marker.title = "the map's peak";
  marker.style.left = (100 * answer.peak.x) + "%"; marker.style.top = (100 * answer.peak.y) + "%";
  figure.append(img, marker);
  result.appendChild(figure);
  if (answer.mp4) {
    const clip = document.createElement("video");
    clip.id = "clip"; clip.controls = true; clip.src = "data:video/mp4;base64," + answer.mp4;
    result.appendChild(clip);
  }
  result.dataset.peakX = answer.peak.x; result.dataset.peakY = answer.peak.y;
  result.dataset.mapShape = answer.map_shape.join(","); result.dataset.map = answer.map;
  result.dataset.state = "done";
});
</script></body></html>
"""

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "A training workdir (config.json + checkpoints/).")
flags.DEFINE_string("object_npz", None, "OG-AVC's ResNet18 .npz (default: the run's).")
flags.DEFINE_string("host", "127.0.0.1", "Address to bind (the default serves this machine only).")
flags.DEFINE_integer("port", 8808, "Port to listen on.")
flags.DEFINE_float("max_upload_mb", 50.0, "Largest upload accepted, in MB.")
flags.DEFINE_float("max_seconds", 60.0, "Longest sound or video accepted, in seconds.")
# --checkpoint and --object_npz are localize's flags (imported above).


def warm_up(localizer: Localizer) -> None:
    """Compiles each variant's map once, so that the first upload does not wait for it."""
    size = localizer.run.config.image_size
    samples = round(localizer.run.config.sample_rate * localizer.run.config.audio_seconds)
    image, pcm = np.zeros([size, size, 3], np.uint8), np.zeros([samples], np.int16)
    for variant in localizer.variants:
        localize.localization_map(localizer.run, image, pcm, variant, localizer.objects)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.checkpoint:
        raise app.UsageError("--checkpoint=WORKDIR is required.")
    if FLAGS.max_upload_mb <= 0 or FLAGS.max_seconds <= 0:
        raise app.UsageError("--max_upload_mb and --max_seconds must be positive.")
    try:
        localizer = Localizer(localize.load_run(FLAGS.checkpoint), FLAGS.object_npz)
    except (RunError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    for variant, reason in localizer.unavailable.items():
        logging.warning("%s is not offered: %s", variant, reason)
    warm_up(localizer)
    limits = Limits(round(FLAGS.max_upload_mb * 2**20), FLAGS.max_seconds)
    print(
        f"serving {localizer.run.workdir} (step {localizer.run.step}) on "
        f"http://{FLAGS.host}:{FLAGS.port}/",
        flush=True,
    )
    uvicorn.run(
        create_app(localizer, limits), host=FLAGS.host, port=FLAGS.port, log_level="warning"
    )


if __name__ == "__main__":
    app.run(main)
