"""A clip's frame and sound from a raw video file (`video/<id>.mp4`), decoded with PyAV.

The frame is the one whose timestamp is nearest the middle of the video stream (or the
`keyframe`-th frame, counted from 0 in presentation order, when the Flickr test csv gives
one); the sound is the first audio stream, mixed to mono and reduced to the centre 3 s
at 22,050 Hz by the same code that reads `audio/*.wav` (`media.float_to_int16`, then
`media.crop_or_tile`), so a clip gives the same example whether it arrives as a video or pre-extracted.

Every failure is a `MediaError` naming the file: no such stream, undecodable data, a
keyframe past the last frame, a stream that decodes to nothing.
"""

from __future__ import annotations

import os

import numpy as np

from avkd_jax.datasets import media
from avkd_jax.errors import MediaError

__all__ = [
    "decode_errors",
    "frame_times",
    "load_video_audio",
    "load_video_frame",
    "load_video_track",
    "open_video",
]


def _av():
    import av  # ffmpeg inside: import on first use, as soundfile and librosa are

    return av


def decode_errors():
    """The exceptions PyAV raises on a damaged or unreadable file."""
    av = _av()
    return (av.error.FFmpegError, OSError, ValueError, EOFError)


def open_video(path: str):
    """An open PyAV input container; MediaError naming `path` when ffmpeg cannot open it."""
    av = _av()
    try:
        return av.open(path, mode="r")
    except decode_errors() as e:
        raise MediaError(path, f"cannot open video ({e})") from None


def _stream_middle(path: str) -> float | None:
    """The middle of the first video stream in seconds: start + duration / 2.

    The duration is the stream's own (mp4 headers), else the span of its packets' time
    stamps (mkv, webm): never the container's, which an audio track may lengthen. None
    when no packet has a timestamp.
    """
    with open_video(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        stream = container.streams.video[0]
        tb = stream.time_base
        if stream.duration and tb:
            start = stream.start_time or 0
            return float((start + stream.duration / 2) * tb)
        default = round(1 / (stream.average_rate * tb)) if stream.average_rate and tb else 0
        lo = hi = None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            end = packet.pts + (packet.duration or default)
            lo = packet.pts if lo is None else min(lo, packet.pts)
            hi = end if hi is None else max(hi, end)
        return None if lo is None else float((lo + hi) / 2 * tb)


def frame_times(container, stream):
    """Yields (seconds, frame) for every decoded frame, in presentation order."""
    rate = float(stream.average_rate) if stream.average_rate else None
    for index, frame in enumerate(container.decode(stream)):
        t = frame.time
        if t is None:
            if rate is None:
                raise MediaError(container.name, "video frames carry no timestamps or rate")
            t = index / rate
        yield float(t), frame


def _middle_frame(container, stream, path, middle):
    if middle is None:  # No timestamps in the packets: the decoded frames' span.
        frames = list(frame_times(container, stream))
        if not frames:
            raise MediaError(path, "video stream decodes to no frame")
        middle = (frames[0][0] + frames[-1][0]) / 2
        return min(frames, key=lambda tf: abs(tf[0] - middle))[1]
    best, best_gap = None, None
    for t, frame in frame_times(container, stream):
        gap = abs(t - middle)
        if best_gap is not None and gap >= best_gap and t > middle:
            break  # Frames only move away from the middle now; ties keep the earlier.
        if best_gap is None or gap < best_gap:
            best, best_gap = frame, gap
    if best is None:
        raise MediaError(path, "video stream decodes to no frame")
    return best


def _nth_frame(container, stream, path, n: int):
    if n < 0:
        raise MediaError(path, f"keyframe {n} is negative")
    count = 0
    for _, frame in frame_times(container, stream):
        if count == n:
            return frame
        count += 1
    raise MediaError(path, f"keyframe {n} is past the clip's last frame ({count} frames)")


def load_video_frame(path, keyframe: int | None = None, shorter_side: int | None = 256):
    """One frame of a video as RGB with its shorter side resized to `shorter_side`.

    Args:
      path: a video file ffmpeg reads (mp4, mkv, webm, ...).
      keyframe: None for the frame whose timestamp is nearest the middle of the video
        stream (start + duration / 2, `_stream_middle`; the earlier frame on a tie); else
        the 0-based index of the frame in presentation order (the Flickr test csv's
        second column).
      shorter_side: as `media.load_image`.

    Returns:
      np.uint8 [H, W, 3].

    Raises:
      MediaError: missing/empty/undecodable file, no video stream, no frame, or a
        keyframe past the last frame.
    """
    path = media.check_file(path)
    try:
        # Also checks that there is a video stream.
        middle = _stream_middle(path) if keyframe is None else None
    except MediaError:
        raise
    except decode_errors() as e:
        raise MediaError(path, f"cannot read video ({e})") from None
    with open_video(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        stream = container.streams.video[0]
        try:
            if keyframe is None:
                frame = _middle_frame(container, stream, path, middle)
            else:
                frame = _nth_frame(container, stream, path, int(keyframe))
            image = frame.to_image()
        except MediaError:
            raise
        except decode_errors() as e:
            raise MediaError(path, f"cannot decode video ({e})") from None
    return media.image_array(image, shorter_side)


def _exact_int16(frame, sample_rate: int) -> bool:
    return (
        frame.format.name in ("s16", "s16p")
        and len(frame.layout.channels) == 1
        and frame.sample_rate == sample_rate
    )


def load_video_track(path, sample_rate: int = 22050) -> np.ndarray:
    """All of a video's first audio stream as 16-bit mono PCM at `sample_rate`.

    Channels are averaged to mono and go through `media.float_to_int16` (soxr resampling,
    int16), as `load_audio` treats a wav or flac file; a 16-bit mono stream at
    `sample_rate` is kept bit-exact.

    Returns:
      np.int16 [N].

    Raises:
      MediaError: missing/empty/undecodable file, no audio stream, no samples.
    """
    path = media.check_file(path)
    with open_video(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        stream = container.streams.audio[0]
        # Codecs that work in whole frames (AAC) decode padding past the stream's end;
        # the container's duration says where the sound stops.
        length = None
        if stream.duration and stream.time_base and stream.rate:
            length = round(stream.duration * stream.time_base * stream.rate)
        try:
            x, rate, exact = _decode_mono(container, stream, sample_rate)
        except MediaError:
            raise
        except decode_errors() as e:
            raise MediaError(path, f"cannot decode audio ({e})") from None
    x = x[:length]
    if x.shape[0] == 0:
        raise MediaError(path, "audio stream decodes to no samples")
    if exact:
        return x
    return media.float_to_int16(x, rate, path, sample_rate)


def _decode_mono(container, stream, sample_rate: int):
    """The stream's samples mixed to mono as each frame is decoded (only the mono track is
    held): (int16 [N] when every frame is 16-bit mono at `sample_rate`, else float64 [N]
    at the native rate; the native rate; whether int16)."""
    av = _av()
    ints, floats, to_float, rate = [], [], None, None
    for frame in container.decode(stream):
        rate = rate or frame.sample_rate
        if to_float is None and _exact_int16(frame, sample_rate):
            ints.append(frame.to_ndarray().reshape(-1))
            continue
        if to_float is None:
            # Planar float64 keeps every input format exact (s16 → v / 32768, as
            # soundfile reads it), whatever the frames' sample format.
            to_float = av.AudioResampler(format="dblp")
            floats = [i / 32768.0 for i in ints]
        floats += [c.to_ndarray().mean(axis=0) for c in to_float.resample(frame)]
    if to_float is None:
        return (np.concatenate(ints) if ints else np.zeros([0], np.int16)), rate, True
    floats += [c.to_ndarray().mean(axis=0) for c in to_float.resample(None)]
    return np.concatenate(floats), rate, False


def load_video_audio(path, sample_rate: int = 22050, seconds: float = 3.0) -> np.ndarray:
    """The centre `seconds` of a video's first audio stream as 16-bit mono PCM.

    The whole stream (`load_video_track`) reduced to its centre round(sample_rate *
    seconds) samples, tiled when shorter (`media.crop_or_tile`), exactly as `load_audio`
    treats a wav or flac file.

    Returns:
      np.int16 [round(sample_rate * seconds)].

    Raises:
      MediaError: missing/empty/undecodable file, no audio stream, no samples.
    """
    pcm = load_video_track(path, sample_rate)
    if pcm.shape[0] == 0:
        raise MediaError(os.fspath(path), "audio stream decodes to no samples")
    return media.crop_or_tile(pcm, round(sample_rate * seconds))
