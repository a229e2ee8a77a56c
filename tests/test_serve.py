"""`python -m avkd_jax.serve`: the upload page over `localize`.

The fast tests drive the app in-process (Starlette's TestClient) on a random-weight
student; the slow one starts the server on the trained synthetic run and uploads scenes
from headless Chromium (Debian's chromium + chromium-driver), checking that the page's
maps peak on the sounding object.
"""

import base64
import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from helpers.paths import REPO
from PIL import Image
from test_localize import lone_off_centre_scenes, write_mp4

pytest.importorskip("starlette", reason="the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from avkd_jax import localize, serve  # noqa: E402
from avkd_jax.datasets import synthetic_world  # noqa: E402
from avkd_jax.eval import diagnostics, fusion  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = REPO / "docs" / "serve_screenshot.png"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: no proxy


def scene_files(folder, seed=1, index=0, seconds=None):
    """A synthetic test scene as a user's files: (x.jpg, y.wav, the scene)."""
    scene = synthetic_world.make_scene(seed, "test", index, include_swap=False)
    image, audio = folder / f"scene{index}.jpg", folder / f"scene{index}.wav"
    Image.fromarray(scene["image"]).save(image, quality=95)
    pcm = scene["audio"] if seconds is None else np.resize(scene["audio"], int(seconds * 22050))
    sf.write(audio, pcm, 22050)
    return image, audio, scene


def decoded_map(answer) -> np.ndarray:
    raw = base64.b64decode(answer["map"])
    return np.frombuffer(raw, "<f4").reshape(answer["map_shape"])


@pytest.fixture(scope="module")
def localizer(random_run):
    return serve.Localizer(localize.load_run(random_run))


@pytest.fixture(scope="module")
def client(localizer):
    limits = serve.Limits(max_bytes=2**20, max_seconds=10.0)
    with TestClient(serve.create_app(localizer, limits)) as test_client:
        yield test_client


def post(client, **files):
    """POST /localize with `files` as {field: path} (a tuple: (name, bytes))."""
    variant = files.pop("variant", None)
    parts = {}
    for field, value in files.items():
        name, data = value if isinstance(value, tuple) else (value.name, value.read_bytes())
        parts[field] = (name, data, "application/octet-stream")
    return client.post("/localize", files=parts, data={"variant": variant} if variant else {})


def test_page_has_the_form_and_no_external_assets(client):
    page = client.get("/")
    assert page.status_code == 200
    for needle in ('id="image"', 'id="audio"', 'id="video"', '<option value="AVC">'):
        assert needle in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert "OG-AVC" not in page.text  # The random run has no object model.


def test_upload_gives_localizes_overlay_and_map(client, random_run, tmp_path):
    image, audio, _ = scene_files(tmp_path)
    response = post(client, image=image, audio=audio)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = localize.localize(
        random_run, image=str(image), audio=str(audio), out=str(tmp_path / "cli")
    )
    heat = decoded_map(answer)
    np.testing.assert_array_equal(heat, expected["map"])
    with Image.open(io.BytesIO(base64.b64decode(answer["overlay"]))) as im:
        assert im.format == "PNG" and im.size == (256, 256)
        np.testing.assert_array_equal(np.asarray(im), np.asarray(Image.open(expected["png"])))
    iy, ix = np.unravel_index(np.argmax(heat), heat.shape)
    assert answer["peak"] == {"x": (ix + 0.5) / 224, "y": (iy + 0.5) / 224}
    assert answer["variant"] == "AVC" and answer["step"] == expected["step"]


def test_video_gives_its_middle_frame_and_the_clip(client, localizer, tmp_path):
    scene = synthetic_world.make_scene(1, "test", 4, include_swap=False)
    frame = np.asarray(Image.fromarray(scene["image"]).resize((160, 120)))
    clip = write_mp4(tmp_path / "clip.mp4", frame, scene["audio"], 22050)
    response = post(client, video=tmp_path / "clip.mp4")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert base64.b64decode(answer["mp4"])[4:8] == b"ftyp"  # The clip over time, an mp4.
    run = localizer.run
    _, stored = localize.read_picture(clip, True)
    expected = localize.localization_map(
        run,
        localize.model_image(stored, run.config.image_size),
        localize.read_sound(clip, True, run.config),
    )
    np.testing.assert_array_equal(decoded_map(answer), expected)
    assert answer["size"] == {"width": 160, "height": 120}


def test_bad_uploads_get_400_and_say_why(client, tmp_path):
    image, audio, _ = scene_files(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture, not a sound")
    cases = {
        "image (notes.txt): not a recognised image format": {"image": notes, "audio": audio},
        "audio (notes.txt): cannot decode audio": {"image": image, "audio": notes},
        "missing field 'audio'": {"image": image},
        "missing field 'image' and 'audio'": {},
        "image (empty.png): the file is empty": {"image": ("empty.png", b""), "audio": audio},
        "not both": {"image": image, "audio": audio, "video": image},
        "video (notes.txt): cannot open video": {"video": notes},
        "variant 'XYZ': expected one of AVC": {"image": image, "audio": audio, "variant": "XYZ"},
        "variant OG-AVC is not available": {"image": image, "audio": audio, "variant": "OG-AVC"},
    }
    for message, files in cases.items():
        response = post(client, **files)
        assert response.status_code == 400, (message, response.text)
        assert message in response.json()["error"]
        assert "Traceback" not in response.text


def test_too_long_and_too_large(client, tmp_path):
    image, audio, _ = scene_files(tmp_path, seconds=12.5)
    response = post(client, image=image, audio=audio)
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"audio ({audio.name}): 12.5 s is longer than the 10 s limit (--max_seconds)"
    )
    big = np.random.default_rng(0).integers(0, 256, 2**20 + 1, np.uint8).tobytes()
    response = post(client, image=("big.png", big), audio=audio)
    assert response.status_code == 413
    total = int(response.request.headers["content-length"]) / 2**20
    assert response.json()["error"] == (
        f"upload of {total:.3g} MB: larger than the 1 MB limit (--max_upload_mb)"
    )


def test_binds_localhost_by_default():
    assert serve.FLAGS["host"].default == "127.0.0.1"
    assert serve.FLAGS["port"].default == 8808
    assert serve.FLAGS["max_upload_mb"].default == 50 and serve.FLAGS["max_seconds"].default == 60


def test_missing_dependencies_name_the_extra():
    code = "import sys; sys.modules['uvicorn'] = None; import avkd_jax.serve"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 1
    assert "avkd_jax.serve needs starlette, uvicorn and python-multipart" in out.stderr
    assert "pip install -e '.[serve]'" in out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(process, log, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"the server exited ({process.returncode}): {log.read()[-3000:]}")
        try:
            with DIRECT.open(url, timeout=5) as page:
                if page.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"no answer from {url} in {timeout:.0f} s")


def save_small_png(png: bytes, path) -> None:
    """A screenshot as a 256-colour PNG (the docs' picture stays small)."""
    with Image.open(io.BytesIO(png)) as im:
        im.convert("RGB").quantize(256).save(path, format="PNG", optimize=True)


@contextlib.contextmanager
def browser_page(workdir):
    """Starts the server on `workdir` and opens its page in headless Chromium; yields
    `upload(image, audio, variant) -> (map, peak (x, y), driver)`. Skips when Chromium or
    its driver is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    port = free_port()
    cmd = [sys.executable, "-m", "avkd_jax.serve", f"--checkpoint={workdir}", f"--port={port}"]
    log = tempfile.TemporaryFile("w+")  # Not a pipe: a full pipe would stall the server.
    server = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-proxy-server"):
        options.add_argument(argument)
    driver = None

    def upload(image, audio, variant):
        for field, path in (("image", image), ("audio", audio)):
            driver.find_element(By.ID, field).clear()
            driver.find_element(By.ID, field).send_keys(str(path))
        Select(driver.find_element(By.ID, "variant")).select_by_value(variant)
        result = driver.find_element(By.ID, "result")
        driver.execute_script("arguments[0].dataset.state = 'empty'", result)
        driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 300).until(
            lambda _: result.get_attribute("data-state") in ("done", "error")
        )
        error = driver.find_element(By.ID, "error").text
        assert result.get_attribute("data-state") == "done", error
        assert driver.find_element(By.ID, "overlay").get_property("naturalWidth") > 0
        shape = [int(n) for n in result.get_attribute("data-map-shape").split(",")]
        raw = base64.b64decode(result.get_attribute("data-map"))
        heat = np.frombuffer(raw, "<f4").reshape(shape)
        peak = (
            float(result.get_attribute("data-peak-x")),
            float(result.get_attribute("data-peak-y")),
        )
        return heat, peak, driver

    try:
        wait_for_server(server, log, f"http://127.0.0.1:{port}/", timeout=600)
        # A driver path given: selenium-manager is never run (nothing is downloaded).
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        # The page's own size: a window's size includes the browser's frame.
        metrics = {"width": 1000, "height": 700, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        driver.get(f"http://127.0.0.1:{port}/")
        yield upload
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_browser_uploads_peak_on_the_sounding_object(trained_run, tmp_path):
    """The page, in headless Chromium, on the trained run: off-centre lone-object scenes'
    images and sounds in (test_localize's twenty), each variant's map the one localize gives, its peak on the
    object's box far more often than chance (a peak anywhere: the box's share)."""
    run = localize.load_run(trained_run)
    objects = localize.object_model(run)
    hits = {fusion.STUDENT: [], fusion.OG: []}
    chance, shot = [], False
    with browser_page(trained_run) as upload:
        for index, box in lone_off_centre_scenes(20):
            scene = synthetic_world.make_scene(123, "test", index, include_swap=False)
            image, audio = tmp_path / f"{index}.jpg", tmp_path / f"{index}.wav"
            Image.fromarray(scene["image"]).save(image, quality=95)
            sf.write(audio, scene["audio"], 22050)
            boxes = np.asarray([box]) / 256
            chance.append((boxes[0, 2] - boxes[0, 0]) * (boxes[0, 3] - boxes[0, 1]))
            _, stored = localize.read_picture(str(image), False)
            pcm = localize.read_sound(str(audio), False, run.config)
            model_image = localize.model_image(stored, run.config.image_size)
            for variant in hits:
                heat, peak, driver = upload(image, audio, variant)
                expected = localize.localization_map(run, model_image, pcm, variant, objects)
                np.testing.assert_allclose(heat, expected, atol=1e-6, rtol=0)
                hit = diagnostics.peak_object(heat, boxes) == 0
                x0, y0, x1, y1 = boxes[0]
                assert hit == (x0 <= peak[0] <= x1 and y0 <= peak[1] <= y1)
                hits[variant].append(hit)
                if hit and variant == fusion.OG and not shot:
                    save_small_png(driver.get_screenshot_as_png(), SCREENSHOT)
                    shot = True
    rates = {v: float(np.mean(h)) for v, h in hits.items()}
    print(f"page's peak on the lone object: {rates}; chance (its area): {np.mean(chance):.2f}")
    assert rates[fusion.STUDENT] >= 1.5 * np.mean(chance)
    assert rates[fusion.OG] >= 2 * np.mean(chance)
    with Image.open(SCREENSHOT) as im:
        assert im.size == (1000, 700)
    assert os.path.getsize(SCREENSHOT) < 400_000
