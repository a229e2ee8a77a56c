"""Tests for avkd_jax.datasets.flickr_layout: every fixture is generated in tmp_path."""

import io
import logging
import pickle
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avkd_jax.datasets import flickr_layout as fl
from avkd_jax.errors import MediaError

SR = 22050
N3 = 3 * SR  # 66,150 samples: the centre 3 s


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ id lists


def test_read_id_list_txt_strips_extensions_keeps_order_and_dedupes(tmp_path, caplog):
    p = _write(
        tmp_path / "list.txt",
        b"2432219254.png\n2542659118.png\n\n  2766580444.PNG \r\n"
        b"2542659118.png\nclip.v2\nabc.wav\n",
    )
    with caplog.at_level(logging.WARNING):
        ids = fl.read_id_list(p)
    # ".v2" is not a media suffix: ids with dots survive.
    assert ids == ["2432219254", "2542659118", "2766580444", "clip.v2", "abc"]
    assert any("1 duplicate" in r.getMessage() and str(p) in r.getMessage() for r in caplog.records)


def test_read_id_list_csv_crlf_and_keyframes(tmp_path):
    p = _write(
        tmp_path / "test.csv",
        b"10000130166,202\r\n10000793634,0\r\n\r\n10000855326,309\r\n10000130166,5\r\n10001,\r\n",
    )
    assert fl.read_id_list(p) == ["10000130166", "10000793634", "10000855326", "10001"]
    # First occurrence wins; an empty second column means "no keyframe".
    assert fl.read_keyframes(p) == {"10000130166": 202, "10000793634": 0, "10000855326": 309}


def test_read_id_list_and_keyframe_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        fl.read_id_list(tmp_path / "nope.txt")
    with pytest.raises(MediaError, match="empty"):
        fl.read_id_list(_write(tmp_path / "empty.txt", b""))
    with pytest.raises(MediaError, match="no ids"):
        fl.read_id_list(_write(tmp_path / "blank.txt", b"\n \r\n\n"))
    bad = _write(tmp_path / "bad.csv", b"1,2\r\n3,x7\r\n")
    with pytest.raises(MediaError, match=r"bad\.csv.*line 2.*'x7'"):
        fl.read_keyframes(bad)


def test_media_error_carries_path_and_reason_and_pickles(tmp_path):
    e = MediaError(tmp_path / "a.wav", "audio has 0 samples")
    assert isinstance(e, ValueError)
    assert e.path == str(tmp_path / "a.wav") and e.reason == "audio has 0 samples"
    assert str(e) == f"{tmp_path / 'a.wav'}: audio has 0 samples"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.path, e2.reason, str(e2)) == (e.path, e.reason, str(e))


# --------------------------------------------------------------------------- annotations


def test_parse_annotation_by_tag_name(tmp_path):
    # Tags out of order and an extra child: only reading by name gets this right.
    p = _write(
        tmp_path / "a.xml",
        b"""<?xml version="1.0"?>
<annotation><filename>x.jpg</filename>
  <object><bbox><type>a</type><ymin>20</ymin><xmin>10</xmin><ymax>40</ymax>
    <xmax>30</xmax><note>n</note></bbox></object>
  <object><name>dog</name><bbox><type>b</type><xmin> 1 </xmin><ymin>2</ymin>
    <xmax>255</xmax><ymax>256</ymax></bbox></object>
</annotation>""",
    )
    assert fl.parse_flickr_annotation(p) == [[10, 20, 30, 40], [1, 2, 255, 256]]


def test_parse_annotation_by_position(tmp_path):
    # Unnamed coordinates: skip the first child, take the next four (reference reader).
    p = _write(
        tmp_path / "b.xml",
        b"""<annotation>
  <object><bbox><kind>x</kind><c>5</c><c>6</c><c>70</c><c>80</c></bbox></object>
  <object><bbox><kind>y</kind><c>0</c><c>1</c><c>2</c><c>3</c><c>99</c></bbox></object>
</annotation>""",
    )
    assert fl.parse_flickr_annotation(p) == [[5, 6, 70, 80], [0, 1, 2, 3]]


def test_annotation_round_trip_and_format(tmp_path):
    boxes = [[12, 30, 140, 200], [10, 28, 143, 199], [0, 33, 138, 256]]
    p = tmp_path / "Annotations" / "9000001.xml"
    p.parent.mkdir()
    fl.write_flickr_annotation(p, boxes, "9000001")
    assert fl.parse_flickr_annotation(p) == boxes
    # The structure real annotations have, checked with ElementTree directly.
    root = ET.parse(p).getroot()
    assert root.tag == "annotation" and root.find("filename").text == "9000001.jpg"
    objs = root.findall("object")
    assert len(objs) == 3
    for obj, box in zip(objs, boxes):
        bbox = obj.find("bbox")
        assert [c.tag for c in bbox] == ["type", "xmin", "ymin", "xmax", "ymax"]
        assert bbox.find("type").text == "sounding"
        assert [int(c.text) for c in list(bbox)[1:]] == box


@pytest.mark.parametrize(
    "content,match",
    [
        (b"<annotation><object><bbox><type>a</type><xmin>1</xmin>", "malformed XML"),
        (b"<annotation><object><name>a</name></object></annotation>", "no <bbox>"),
        (
            (
                b"<annotation><object><bbox><t/><xmin>1.5</xmin><ymin>2</ymin><xmax>3</xmax>"
                b"<ymax>4</ymax></bbox></object></annotation>"
            ),
            r"<xmin>: '1\.5' is not an integer",
        ),
        (
            b"<annotation><object><bbox><t/><a>1</a><b>2</b><c>3</c></bbox></object></annotation>",
            "has 3 coordinate",
        ),
        (
            (
                b"<annotation><object><bbox><t/><a>1</a><b>2</b><c></c><d>4</d></bbox></object>"
                b"</annotation>"
            ),
            "'' is not an integer",
        ),
        (b"", "empty"),
    ],
)
def test_parse_annotation_errors(tmp_path, content, match):
    p = _write(tmp_path / "bad.xml", content)
    with pytest.raises(MediaError, match=match) as info:
        fl.parse_flickr_annotation(p)
    assert info.value.path == str(p)


def test_parse_annotation_missing_file(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        fl.parse_flickr_annotation(tmp_path / "missing.xml")


# --------------------------------------------------------------------------------- audio


def _random_pcm(rng, n):
    return rng.integers(-20000, 20000, size=n).astype(np.int16)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_load_audio_long_mono_int16_is_bit_exact_centre(tmp_path, fmt):
    rng = np.random.default_rng(0)
    x = _random_pcm(rng, int(5.37 * SR))
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, x, SR, format=fmt, subtype="PCM_16")
    y = fl.load_audio(p)
    start = len(x) // 2 - N3 // 2
    assert y.dtype == np.int16 and y.shape == (N3,)
    np.testing.assert_array_equal(y, x[start : start + N3])


@pytest.mark.parametrize("seconds_in", [1.0, 0.7])
def test_load_audio_short_clip_is_tiled(tmp_path, seconds_in):
    rng = np.random.default_rng(1)
    x = _random_pcm(rng, round(seconds_in * SR))
    p = tmp_path / "short.wav"
    sf.write(p, x, SR, subtype="PCM_16")
    y = fl.load_audio(p)
    expected = np.concatenate([x] * (N3 // len(x) + 1))[:N3]
    np.testing.assert_array_equal(y, expected)


def test_load_audio_exact_length_is_identity(tmp_path):
    x = _random_pcm(np.random.default_rng(2), N3)
    p = tmp_path / "exact.wav"
    sf.write(p, x, SR, subtype="PCM_16")
    np.testing.assert_array_equal(fl.load_audio(p), x)


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
    y = fl.load_audio(p)
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
    y = fl.load_audio(p)
    np.testing.assert_array_equal(y, np.round(np.clip(x, -1, 1) * 32767).astype(np.int16))


def test_load_audio_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        fl.load_audio(tmp_path / "missing.wav")
    with pytest.raises(MediaError, match="empty"):
        fl.load_audio(_write(tmp_path / "zero_bytes.wav", b""))
    p = tmp_path / "no_samples.wav"
    sf.write(p, np.zeros(0, np.int16), SR, subtype="PCM_16")
    with pytest.raises(MediaError, match="0 samples"):
        fl.load_audio(p)
    with pytest.raises(MediaError, match="cannot decode"):
        fl.load_audio(_write(tmp_path / "garbage.wav", b"this is not audio" * 50))

    x = _random_pcm(np.random.default_rng(3), 4 * SR)
    for fmt in ("wav", "flac"):
        full = tmp_path / f"full.{fmt}"
        sf.write(full, x, SR, subtype="PCM_16")
        data = full.read_bytes()
        cut = _write(tmp_path / f"cut.{fmt}", data[: len(data) // 2])
        with pytest.raises(MediaError, match="truncated|cannot decode") as info:
            fl.load_audio(cut)
        assert info.value.path == str(cut)

    nan = tmp_path / "nan.wav"
    y = np.zeros(SR, np.float32)
    y[5] = np.nan
    sf.write(nan, y, SR, subtype="FLOAT")
    with pytest.raises(MediaError, match="NaN"):
        fl.load_audio(nan)


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
    y = fl.load_image(p)
    assert y.dtype == np.uint8 and y.shape == out_hw + (3,)
    expected = np.asarray(Image.fromarray(src).resize(out_hw[::-1], Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(y, expected)


def test_load_image_no_resize_when_already_256(tmp_path):
    src = np.random.default_rng(5).integers(0, 256, size=(256, 300, 3), dtype=np.uint8)
    p = tmp_path / "img.png"
    Image.fromarray(src).save(p)
    np.testing.assert_array_equal(fl.load_image(p), src)


@pytest.mark.parametrize(
    "mode,ext", [("L", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "tiff"), ("LA", "png")]
)
def test_load_image_converts_modes_to_rgb(tmp_path, mode, ext):
    rgb = Image.fromarray(_smooth_image(256, 256))
    img = rgb.convert(mode)
    p = tmp_path / f"img.{ext}"
    img.save(p)
    y = fl.load_image(p)
    assert y.shape == (256, 256, 3) and y.dtype == np.uint8
    np.testing.assert_array_equal(y, np.asarray(Image.open(p).convert("RGB")))


def test_load_image_16bit_grey_scaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 256 * 256).reshape(256, 256).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    y = fl.load_image(p)
    expected = np.round(a * (255.0 / 65535.0)).astype(np.uint8)
    np.testing.assert_array_equal(y[..., 0], expected)
    np.testing.assert_array_equal(y[..., 0], y[..., 2])


def test_load_image_errors(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        fl.load_image(tmp_path / "missing.jpg")
    with pytest.raises(MediaError, match="empty"):
        fl.load_image(_write(tmp_path / "empty.jpg", b""))
    with pytest.raises(MediaError, match="not a recognised image"):
        fl.load_image(_write(tmp_path / "garbage.jpg", b"\x00\x01garbage" * 100))
    data = fl.encode_jpeg(np.random.default_rng(6).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    cut = _write(tmp_path / "cut.jpg", data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated") as info:
        fl.load_image(cut)
    assert info.value.path == str(cut)


def test_encode_jpeg_round_trip():
    src = _smooth_image(200, 300)
    data = fl.encode_jpeg(src, quality=95)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int32)
    assert dec.shape == src.shape
    assert np.abs(dec - src).mean() < 2.0
    assert fl.encode_jpeg(src, quality=95) == data  # deterministic
    with pytest.raises(ValueError, match="uint8"):
        fl.encode_jpeg(src.astype(np.float32))
