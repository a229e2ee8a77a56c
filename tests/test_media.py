"""Tests for avkd_jax.datasets.media: every fixture is generated in tmp_path."""

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avkd_jax.datasets import media
from avkd_jax.errors import MediaError

SR = 22050
N3 = 3 * SR  # 66,150 samples: the centre 3 s


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------- audio


def _random_pcm(rng, n):
    return rng.integers(-20000, 20000, size=n).astype(np.int16)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_load_audio_long_mono_int16_is_bit_exact_centre(tmp_path, fmt):
    rng = np.random.default_rng(0)
    x = _random_pcm(rng, int(5.37 * SR))
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, x, SR, format=fmt, subtype="PCM_16")
    y = media.load_audio(p)
    start = len(x) // 2 - N3 // 2
    assert y.dtype == np.int16 and y.shape == (N3,)
    np.testing.assert_array_equal(y, x[start : start + N3])


@pytest.mark.parametrize("seconds_in", [1.0, 0.7])
def test_load_audio_short_clip_is_tiled(tmp_path, seconds_in):
    rng = np.random.default_rng(1)
    x = _random_pcm(rng, round(seconds_in * SR))
    p = tmp_path / "short.wav"
    sf.write(p, x, SR, subtype="PCM_16")
    y = media.load_audio(p)
    expected = np.concatenate([x] * (N3 // len(x) + 1))[:N3]
    np.testing.assert_array_equal(y, expected)


def test_load_audio_exact_length_is_identity(tmp_path):
    x = _random_pcm(np.random.default_rng(2), N3)
    p = tmp_path / "exact.wav"
    sf.write(p, x, SR, subtype="PCM_16")
    np.testing.assert_array_equal(media.load_audio(p), x)


@pytest.mark.parametrize(
    "rate,fmt,channels", [(44100, "WAV", 2), (16000, "FLAC", 1), (48000, "FLAC", 2)]
)
def test_load_audio_resamples_and_mixes(tmp_path, rate, fmt, channels):
    n_in = int(7.3 * rate)
    t = np.arange(n_in) / rate
    phi, amp = 0.3, 0.5
    s = amp * np.sin(2 * np.pi * 440.0 * t + phi)
    # Channels with different gains: the mean (0.75 s) is neither channel nor the sum.
    x = np.stack([s, 0.5 * s], axis=1) if channels == 2 else s
    gain = 0.75 if channels == 2 else 1.0
    p = tmp_path / f"sine.{fmt.lower()}"
    sf.write(p, x, rate, format=fmt, subtype="PCM_16")
    y = media.load_audio(p)
    assert y.dtype == np.int16 and y.shape == (N3,)

    # Spectral peak stays at 440 Hz (within one FFT bin).
    spec = np.abs(np.fft.rfft(y.astype(np.float64) * np.hanning(N3)))
    freqs = np.fft.rfftfreq(N3, 1.0 / SR)
    assert abs(freqs[spec.argmax()] - 440.0) <= SR / N3

    # Sample by sample: the analytic sine at 22,050 Hz, centre of the resampled length.
    n_res = int(np.ceil(n_in * SR / rate))
    k = np.arange(n_res // 2 - N3 // 2, n_res // 2 - N3 // 2 + N3)
    ref = gain * amp * np.sin(2 * np.pi * 440.0 * k / SR + phi) * 32767
    assert np.abs(y - ref).max() < 6  # int16 LSBs


def test_load_audio_float_full_scale_does_not_wrap(tmp_path):
    x = np.zeros(N3, dtype=np.float32)
    x[::2], x[1::2] = 1.0, -1.0
    x[:10] = 1.5  # out of range: clipped
    p = tmp_path / "float.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    y = media.load_audio(p)
    np.testing.assert_array_equal(y, np.round(np.clip(x, -1, 1) * 32767).astype(np.int16))


def test_load_audio_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        media.load_audio(tmp_path / "missing.wav")
    with pytest.raises(MediaError, match="empty"):
        media.load_audio(_write(tmp_path / "zero_bytes.wav", b""))
    p = tmp_path / "no_samples.wav"
    sf.write(p, np.zeros(0, np.int16), SR, subtype="PCM_16")
    with pytest.raises(MediaError, match="0 samples"):
        media.load_audio(p)
    with pytest.raises(MediaError, match="cannot decode"):
        media.load_audio(_write(tmp_path / "garbage.wav", b"this is not audio" * 50))

    x = _random_pcm(np.random.default_rng(3), 4 * SR)
    for fmt in ("wav", "flac"):
        full = tmp_path / f"full.{fmt}"
        sf.write(full, x, SR, subtype="PCM_16")
        data = full.read_bytes()
        cut = _write(tmp_path / f"cut.{fmt}", data[: len(data) // 2])
        with pytest.raises(MediaError, match="truncated|cannot decode") as info:
            media.load_audio(cut)
        assert info.value.path == str(cut)

    nan = tmp_path / "nan.wav"
    y = np.zeros(SR, np.float32)
    y[5] = np.nan
    sf.write(nan, y, SR, subtype="FLOAT")
    with pytest.raises(MediaError, match="NaN"):
        media.load_audio(nan)


# -------------------------------------------------------------------------------- images


def _smooth_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("w,h,out_hw", [(320, 480, (384, 256)), (480, 320, (256, 384))])
def test_load_image_resizes_shorter_side_like_pil(tmp_path, w, h, out_hw):
    src = np.random.default_rng(4).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    p = tmp_path / "img.png"
    Image.fromarray(src).save(p)
    y = media.load_image(p)
    assert y.dtype == np.uint8 and y.shape == out_hw + (3,)
    expected = np.asarray(Image.fromarray(src).resize(out_hw[::-1], Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(y, expected)


def test_load_image_no_resize_when_already_256(tmp_path):
    src = np.random.default_rng(5).integers(0, 256, size=(256, 300, 3), dtype=np.uint8)
    p = tmp_path / "img.png"
    Image.fromarray(src).save(p)
    np.testing.assert_array_equal(media.load_image(p), src)


@pytest.mark.parametrize(
    "mode,ext", [("L", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "tiff"), ("LA", "png")]
)
def test_load_image_converts_modes_to_rgb(tmp_path, mode, ext):
    rgb = Image.fromarray(_smooth_image(256, 256))
    img = rgb.convert(mode)
    p = tmp_path / f"img.{ext}"
    img.save(p)
    y = media.load_image(p)
    assert y.shape == (256, 256, 3) and y.dtype == np.uint8
    np.testing.assert_array_equal(y, np.asarray(Image.open(p).convert("RGB")))


def test_load_image_16bit_grey_scaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 256 * 256).reshape(256, 256).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    y = media.load_image(p)
    expected = np.round(a * (255.0 / 65535.0)).astype(np.uint8)
    np.testing.assert_array_equal(y[..., 0], expected)
    np.testing.assert_array_equal(y[..., 0], y[..., 2])


def test_load_image_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        media.load_image(tmp_path / "missing.jpg")
    with pytest.raises(MediaError, match="empty"):
        media.load_image(_write(tmp_path / "empty.jpg", b""))
    with pytest.raises(MediaError, match="not a recognised image"):
        media.load_image(_write(tmp_path / "garbage.jpg", b"\x00\x01garbage" * 100))
    data = media.encode_jpeg(
        np.random.default_rng(6).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    )
    cut = _write(tmp_path / "cut.jpg", data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated") as info:
        media.load_image(cut)
    assert info.value.path == str(cut)


def test_encode_jpeg_round_trip():
    src = _smooth_image(200, 300)
    data = media.encode_jpeg(src, quality=95)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int32)
    assert dec.shape == src.shape
    assert np.abs(dec - src).mean() < 2.0
    assert media.encode_jpeg(src, quality=95) == data  # deterministic
    with pytest.raises(ValueError, match="uint8"):
        media.encode_jpeg(src.astype(np.float32))
