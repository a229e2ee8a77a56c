"""Media decoding: one image or sound file, read and checked, into arrays.

Every reader fails loudly with `MediaError` (naming the file and what is wrong) on a
missing, empty, truncated or corrupt file. Nothing is ever zero-filled: a silently grey
frame or a silent clip would train and evaluate without anybody noticing.
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from avkd_jax.errors import MediaError

__all__ = [
    "check_file",
    "crop_or_tile",
    "encode_jpeg",
    "float_to_int16",
    "float_to_pcm",
    "image_array",
    "load_audio",
    "load_image",
]


def check_file(path) -> str:
    """Returns the path as str; raises MediaError if it is missing, not a file or empty."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaError(path, "file does not exist")
    if not os.path.isfile(path):
        raise MediaError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise MediaError(path, "file is empty (0 bytes)")
    return path


# --------------------------------------------------------------------------------- audio


def _check_wav_not_truncated(path: str) -> None:
    """Raises MediaError when a RIFF/WAVE file's data chunk is shorter than its header says.

    libsndfile quietly returns only the frames present in a truncated WAV, so this must
    be checked by hand. Streaming writers that leave the size as 0 or 0xFFFFFFFF are not
    flagged: their header makes no claim.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not plain RIFF/WAVE (RF64, W64, ...): libsndfile's checks apply
        file_size = os.fstat(f.fileno()).st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise MediaError(path, "truncated WAV: no 'data' chunk")
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                available = file_size - f.tell()
                if 0 < size < 0xFFFFFFFF and size > available:
                    raise MediaError(
                        path,
                        f"truncated WAV: data chunk declares {size} bytes, file holds {available}",
                    )
                return
            f.seek(size + (size & 1), os.SEEK_CUR)


def _read_audio(path: str, sample_rate: int):
    """Decodes a file to (samples, native_rate, exact_int16).

    Returns int16 [T] (exact_int16=True) when the file is 16-bit mono at `sample_rate`,
    else float64 [T] mono in [-1, 1] at the native rate.
    """
    import soundfile as sf  # heavy native library: import on first use

    if path.lower().endswith(".wav"):
        _check_wav_not_truncated(path)
    try:
        info = sf.info(path)
        if info.frames == 0:
            raise MediaError(path, "audio has 0 samples")
        exact = info.channels == 1 and info.samplerate == sample_rate and info.subtype == "PCM_16"
        x, rate = sf.read(path, dtype="int16" if exact else "float64", always_2d=True)
    except MediaError:
        raise
    except (sf.LibsndfileError, RuntimeError, EOFError) as e:
        raise MediaError(path, f"cannot decode audio ({e})") from None
    if x.shape[0] == 0:
        raise MediaError(path, "audio has 0 samples")
    if 0 < info.frames != x.shape[0]:
        raise MediaError(
            path, f"truncated audio: header declares {info.frames} frames, decoded {x.shape[0]}"
        )
    if exact:
        return x[:, 0], rate, True
    # Mean, not sum: a mono signal duplicated to stereo must come back unchanged.
    return x.mean(axis=1), rate, False


def crop_or_tile(x: np.ndarray, target: int) -> np.ndarray:
    """The centre `target` samples of x [T]; shorter signals are tiled (reference code).

    Centre: start = max(0, T//2 - target//2). Tiling: np.tile(x, target // T + 1)[:target].
    Works for any dtype; returns a new array of length `target`.
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("cannot crop or tile an empty signal")
    if n >= target:
        start = max(0, n // 2 - target // 2)
        return np.array(x[start : start + target])
    reps = int(target / n) + 1
    return np.tile(x, reps)[:target]


def _target_samples(sample_rate: int, seconds: float) -> int:
    target = round(sample_rate * seconds)
    if target <= 0:
        raise ValueError(f"sample_rate * seconds must be positive, got {sample_rate}*{seconds}")
    return target


def float_to_pcm(
    x: np.ndarray, rate: int, path, sample_rate: int = 22050, seconds: float = 3.0
) -> np.ndarray:
    """Mono float samples at `rate` → the centre `seconds` as int16 PCM at `sample_rate`.

    The one conversion every decoder (soundfile here, PyAV in `video`) ends with: soxr_hq
    resampling (librosa) when the rates differ, the centre n = round(sample_rate * seconds)
    samples (tiled when shorter, `crop_or_tile`), then round(clip(x, -1, 1) * 32767).

    Args:
      x: float [T] in [-1, 1], T > 0.
      rate: its sample rate.
      path: the file it came from, named in errors.
    Returns:
      np.int16 [n].
    Raises:
      MediaError: non-finite samples, or too few samples to resample.
    """
    target = _target_samples(sample_rate, seconds)
    # Rounding is per sample, so cropping after it gives the same samples as before it.
    return crop_or_tile(float_to_int16(x, rate, path, sample_rate), target)


def float_to_int16(x: np.ndarray, rate: int, path, sample_rate: int = 22050) -> np.ndarray:
    """Mono float samples at `rate` → all of them as int16 PCM at `sample_rate`: soxr_hq
    resampling (librosa) when the rates differ, then round(clip(x, -1, 1) * 32767).

    Args:
      x: float [T] in [-1, 1], T > 0.
    Returns:
      np.int16 [M], M = T when the rates agree.
    Raises:
      MediaError: non-finite samples, or too few samples to resample.
    """
    if not np.all(np.isfinite(x)):
        raise MediaError(path, "audio contains NaN or infinite samples")
    if rate != sample_rate:
        import librosa  # slow to import; only needed off the exact path

        x = librosa.resample(x, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
        if x.shape[0] == 0:
            raise MediaError(path, f"audio too short to resample from {rate} Hz")
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def load_audio(path, sample_rate: int = 22050, seconds: float = 3.0) -> np.ndarray:
    """Loads the centre `seconds` of an audio file as 16-bit mono PCM.

    Decoding is by soundfile (wav, flac, ...). Multi-channel audio is averaged to mono;
    other rates are resampled to `sample_rate` with soxr_hq (librosa). The centre
    n = round(sample_rate * seconds) samples are kept (start = max(0, T//2 - n//2)); a
    shorter clip is tiled (np.tile(x, int(n / T) + 1)[:n]) as the reference code does.

    Float samples map to int16 as round(clip(x, -1, 1) * 32767), so full scale is
    symmetric and +1.0 does not wrap. A file that already is 16-bit mono at
    `sample_rate` is read as int16 and returned bit-exact (no float round trip).

    Returns:
      np.int16 array [round(sample_rate * seconds)].

    Raises:
      MediaError: missing, empty (0 bytes or 0 samples), truncated or undecodable file,
        or non-finite samples.
    """
    path = check_file(path)
    target = _target_samples(sample_rate, seconds)
    x, rate, exact = _read_audio(path, sample_rate)
    if exact:
        return crop_or_tile(x, target).astype(np.int16, copy=False)
    return float_to_pcm(x, rate, path, sample_rate, seconds)


# -------------------------------------------------------------------------------- images


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode == "I":
        # PIL's convert("RGB") clips 16-bit values at 255; scale the 16-bit range instead.
        a = np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([a] * 3, axis=-1), "RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    # RGBA/LA: the alpha channel is dropped (colours kept as stored), like cv2 does.
    return img.convert("RGB")


def load_image(path, shorter_side: int | None = 256) -> np.ndarray:
    """Decodes an image to RGB with its shorter side resized to `shorter_side`.

    Any PIL mode (L, LA, RGBA, P, CMYK, I;16, ...) is converted to RGB; EXIF orientation is
    applied. Resizing is PIL bicubic, aspect kept (long side = round(long * s / short));
    none when the shorter side already equals `shorter_side` or it is None.

    The image is fully decoded before use, so a truncated file raises instead of coming
    back partly grey.

    Returns:
      np.uint8 array [H, W, 3].

    Raises:
      MediaError: missing, empty, truncated or undecodable file.
      RuntimeError: PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set to True by someone.
    """
    path = check_file(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated images would decode "
            "as partly grey frames. load_image needs it False."
        )
    try:
        with Image.open(path) as img:
            img.load()
            arr = image_array(ImageOps.exif_transpose(img), shorter_side)
    except UnidentifiedImageError:
        raise MediaError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise MediaError(path, f"cannot decode image ({e})") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise MediaError(path, f"decoded to unexpected shape {arr.shape}")
    return arr


def image_array(img: Image.Image, shorter_side: int | None = 256) -> np.ndarray:
    """A decoded PIL image → RGB uint8 [H, W, 3], shorter side resized to `shorter_side`.

    Resizing is PIL bicubic, aspect kept (long side = round(long * s / short)); none when
    the shorter side already equals `shorter_side` or it is None. Shared by `load_image`
    and the video frame reader so frames and videos become the same pixels.
    """
    img = _to_rgb(img)
    if shorter_side is not None:
        w, h = img.size
        short = min(w, h)
        if short != shorter_side:
            scale = shorter_side / short
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if w <= h:
                size = (shorter_side, size[1])
            else:
                size = (size[0], shorter_side)
            img = img.resize(size, Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def encode_jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    """Encodes an RGB uint8 array [H, W, 3] (or grey [H, W]) as baseline JPEG bytes."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"encode_jpeg needs uint8, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"encode_jpeg needs [H, W, 3] or [H, W], got {array.shape}")
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
