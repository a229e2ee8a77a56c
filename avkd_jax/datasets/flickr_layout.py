"""Readers (and one writer) for the Flickr-SoundNet raw layout.

The raw layout is what users download and what `synthetic_world` emits:

    frames/<id>.jpg            one key frame per clip (.jpeg, .png accepted)
    audio/<id>.wav|flac        the clip's sound
    video/<id>.mp4             or the raw clip instead of both (read by `video`)
    Annotations/<id>.xml       test only: one box per annotator, pixels in a 256x256 frame
    <list>.txt | <list>.csv    ids ("<id>" or "<id>.png" per line; or "id,keyframe" CSV)

Every reader fails loudly with `MediaError` (naming the file and what is wrong) on a
missing, empty, truncated or corrupt file. Nothing is ever zero-filled: a silently grey
frame or a silent clip would train and evaluate without anybody noticing.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from avkd_jax.errors import MediaError

__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "KNOWN_MEDIA_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "MediaError",
    "crop_or_tile",
    "encode_jpeg",
    "find_media",
    "flickr_annotation_bytes",
    "float_to_pcm",
    "image_array",
    "load_audio",
    "load_image",
    "parse_flickr_annotation",
    "read_id_list",
    "read_keyframes",
    "strip_media_extension",
    "write_flickr_annotation",
]

logger = logging.getLogger(__name__)

# Lists in the wild name clips by their frame or media file ("2432219254.png"); only these
# suffixes are stripped, so ids that legitimately contain dots survive.
KNOWN_MEDIA_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".m4a",
    ".aac",
    ".mp4",
    ".mkv",
    ".avi",
    ".webm",
    ".mov",
    ".flv",
)

# The files a clip may have in each folder of the layout, in order of preference.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
AUDIO_EXTENSIONS = (".wav", ".flac")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")

_COORD_TAGS = ("xmin", "ymin", "xmax", "ymax")


def _check_file(path) -> str:
    """Returns the path as str; raises MediaError if it is missing, not a file or empty."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaError(path, "file does not exist")
    if not os.path.isfile(path):
        raise MediaError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise MediaError(path, "file is empty (0 bytes)")
    return path


def find_media(directory, example_id: str, extensions: Sequence[str]) -> str | None:
    """`<directory>/<example_id><ext>` for the first ext of `extensions` that exists, else None.

    Existence only: an empty or corrupt file is found here and rejected by its reader.
    """
    for ext in extensions:
        path = os.path.join(os.fspath(directory), example_id + ext)
        if os.path.exists(path):
            return path
    return None


def strip_media_extension(name: str) -> str:
    """`2432219254.png` → `2432219254`; only the KNOWN_MEDIA_EXTENSIONS are stripped."""
    lower = name.lower()
    for ext in KNOWN_MEDIA_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        # utf-8-sig: lists saved by Windows tools may start with a BOM.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MediaError(path, f"not UTF-8 text ({e})") from None


def _csv_rows(path: str, text: str):
    """Yields (line_number, row) for the non-blank rows of a CSV text."""
    for line_no, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        row = [c.strip() for c in row]
        if not row or not any(row):
            continue
        yield line_no, row


def read_id_list(path) -> list[str]:
    """Reads an id list: `.txt` (one id per line) or `.csv` (id in the first column).

    Known media suffixes are stripped (`2432219254.png` -> `2432219254`), blank lines are
    ignored, order is kept. Duplicates are dropped (first occurrence kept) and their count
    is logged as a warning, since real lists do contain a few.

    Args:
      path: a `.txt` or `.csv` file. Any other suffix is read as `.txt`.

    Returns:
      list[str] of ids, in file order, without duplicates.

    Raises:
      MediaError: missing/empty file, undecodable text, or a file with no id at all.
    """
    path = _check_file(path)
    text = _read_text(path)
    if path.lower().endswith(".csv"):
        raw_ids = [row[0] for _, row in _csv_rows(path, text) if row[0]]
    else:
        # splitlines() handles \n, \r\n and \r alike.
        raw_ids = [line.strip() for line in text.splitlines()]
        raw_ids = [r for r in raw_ids if r]
    if not raw_ids:
        raise MediaError(path, "id list contains no ids")
    seen: set[str] = set()
    ids: list[str] = []
    for raw in raw_ids:
        id_ = strip_media_extension(raw)
        if id_ in seen:
            continue
        seen.add(id_)
        ids.append(id_)
    dropped = len(raw_ids) - len(ids)
    if dropped:
        logger.warning("%s: dropped %d duplicate id(s), kept %d", path, dropped, len(ids))
    return ids


def read_keyframes(csv_path) -> dict[str, int]:
    """Reads `id,keyframe` rows of a Flickr-style test CSV (CRLF, no header).

    Returns:
      dict id -> int keyframe, for the rows that have a second column. For duplicate
      ids the first row wins (as in `read_id_list`).

    Raises:
      MediaError: missing/empty file, or a keyframe that is not an integer.
    """
    path = _check_file(csv_path)
    out: dict[str, int] = {}
    for line_no, row in _csv_rows(path, _read_text(path)):
        if len(row) < 2 or not row[1]:
            continue
        id_ = strip_media_extension(row[0])
        try:
            keyframe = int(row[1])
        except ValueError:
            raise MediaError(
                path, f"line {line_no}: keyframe {row[1]!r} is not an integer"
            ) from None
        out.setdefault(id_, keyframe)
    return out


# --------------------------------------------------------------------------- annotations


def _parse_int(path: str, elem: ET.Element, what: str) -> int:
    text = (elem.text or "").strip()
    try:
        return int(text)
    except ValueError:
        raise MediaError(path, f"{what}: {text!r} is not an integer") from None


def parse_flickr_annotation(xml_path) -> list[list[int]]:
    """Reads the boxes of one Flickr-SoundNet test annotation file.

    Follows the reference reader: every `<bbox>` that is a child of a child of the root
    is one annotator's box. Coordinates are read by tag name (xmin, ymin, xmax, ymax)
    when those four tags are present, else by position: the first child (`<type>`) is
    skipped and the next four are xmin, ymin, xmax, ymax.

    Returns:
      list of [xmin, ymin, xmax, ymax] python ints, pixel coordinates in the 256x256
      frame, one per annotator, in file order. Coordinate order is not validated.

    Raises:
      MediaError: missing/empty/malformed XML, no `<bbox>`, a bbox with fewer than four
        coordinates, or a coordinate that is not an integer.
    """
    path = _check_file(xml_path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise MediaError(path, f"malformed XML ({e})") from None
    boxes: list[list[int]] = []
    for child in root:
        for sub in child:
            if sub.tag != "bbox":
                continue
            where = f"bbox #{len(boxes) + 1}"
            by_name = {c.tag: c for c in sub if c.tag in _COORD_TAGS}
            if len(by_name) == 4:
                coords = [_parse_int(path, by_name[t], f"{where} <{t}>") for t in _COORD_TAGS]
            else:
                elems = list(sub)[1:5]
                if len(elems) < 4:
                    raise MediaError(
                        path,
                        f"{where} has {len(elems)} coordinate(s) after its first "
                        "child, needs 4 (xmin, ymin, xmax, ymax)",
                    )
                coords = [_parse_int(path, e, f"{where} child <{e.tag}>") for e in elems]
            boxes.append(coords)
    if not boxes:
        raise MediaError(path, "no <bbox> element found under the root's children")
    return boxes


def flickr_annotation_bytes(boxes: Sequence[Sequence[int]], image_id: str) -> bytes:
    """The XML bytes `write_flickr_annotation` writes (see there)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    if len(boxes) == 0:
        raise ValueError(f"annotation for {image_id!r} needs at least one box")
    for i, box in enumerate(boxes):
        if len(box) != 4:
            raise ValueError(
                f"annotation for {image_id!r}: box {i} is {box!r}, "
                "expected [xmin, ymin, xmax, ymax]"
            )
        obj = ET.SubElement(root, "object")
        bbox = ET.SubElement(obj, "bbox")
        ET.SubElement(bbox, "type").text = "sounding"
        for tag, value in zip(_COORD_TAGS, box):
            if int(value) != value:
                raise ValueError(
                    f"annotation for {image_id!r}: box {i} has non-integer {tag}={value!r}"
                )
            ET.SubElement(bbox, tag).text = str(int(value))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_flickr_annotation(xml_path, boxes: Sequence[Sequence[int]], image_id: str) -> None:
    """Writes one annotation file in the Flickr-SoundNet test format.

    `<annotation><filename>ID.jpg</filename>` then one `<object><bbox><type>sounding</type>
    <xmin/><ymin/><xmax/><ymax/></bbox></object>` per annotator, so that the readers of the
    real data read it unchanged.

    Args:
      xml_path: destination file (written directly; callers wanting atomicity pass a
        temporary name and rename).
      boxes: per annotator [xmin, ymin, xmax, ymax], integer pixels in a 256x256 frame.
      image_id: the clip id, stored in `<filename>`.
    """
    data = flickr_annotation_bytes(boxes, image_id)
    with open(xml_path, "wb") as f:
        f.write(data)


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
    if not np.all(np.isfinite(x)):
        raise MediaError(path, "audio contains NaN or infinite samples")
    if rate != sample_rate:
        import librosa  # slow to import; only needed off the exact path

        x = librosa.resample(x, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
        if x.shape[0] == 0:
            raise MediaError(path, f"audio too short to resample from {rate} Hz")
    x = crop_or_tile(x, target)
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
    path = _check_file(path)
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
    path = _check_file(path)
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
