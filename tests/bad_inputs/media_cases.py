"""The bad-input cases of images, audio files and videos."""

import os

import numpy as np
import soundfile as sf
from helpers.media import sine, write_clip

from avkd_jax.datasets import (
    media,
    video,
)
from avkd_jax.errors import MediaError
from bad_inputs.cases import (
    SR,
    Case,
    cut,
    load_truncated_images_set,
    put,
    write_image,
    write_wav,
)


def _image(ctx, write):
    path = ctx.path("frames/clip.jpg")
    write(path)
    return (lambda: media.load_image(path)), path


def _truncated_png(path):
    write_image(path, ext_format="PNG")
    cut(path, fraction=0.6)


IMAGE_CASES = [
    Case(
        "image-missing",
        "image",
        "no such file",
        MediaError,
        lambda ctx: ((lambda: media.load_image(ctx.path("nothing.jpg"))), "nothing.jpg"),
        "`<path>: file does not exist`; a builder skips the clip (skipped-<split>.tsv).",
    ),
    Case(
        "image-empty",
        "image",
        "0 bytes",
        MediaError,
        lambda ctx: _image(ctx, lambda p: put(p, b"")),
        "`<path>: file is empty (0 bytes)`.",
    ),
    Case(
        "image-truncated-jpeg",
        "image",
        "a JPEG cut short",
        MediaError,
        lambda ctx: _image(ctx, lambda p: cut(write_image(p), keep=300)),
        "`<path>: cannot decode image (... truncated)`: never decoded partly grey.",
    ),
    Case(
        "image-truncated-png",
        "image",
        "a PNG cut short",
        MediaError,
        lambda ctx: _image(ctx, _truncated_png),
        "`<path>: cannot decode image`.",
    ),
    Case(
        "image-not-an-image",
        "image",
        "text saved as .jpg",
        MediaError,
        lambda ctx: _image(ctx, lambda p: put(p, "hello")),
        "`<path>: not a recognised image format`.",
    ),
    Case(
        "image-is-a-directory",
        "image",
        "a folder where the frame should be",
        MediaError,
        lambda ctx: _image(ctx, os.makedirs),
        "`<path>: not a regular file`.",
    ),
    Case(
        "image-pil-truncated-flag",
        "image",
        "PIL's LOAD_TRUNCATED_IMAGES set to True by other code",
        RuntimeError,
        lambda ctx: (
            load_truncated_images_set(write_image(ctx.path("x.jpg"))),
            "LOAD_TRUNCATED_IMAGES",
        ),
        "RuntimeError: the loader refuses to run with it (truncated frames would be grey).",
    ),
]


def _audio(ctx, write, name="clip.wav"):
    path = ctx.path(f"audio/{name}")
    write(path)
    return (lambda: media.load_audio(path, SR, 0.5)), path


def _zero_samples(path):
    sf.write(path, np.zeros(0, np.int16), SR, subtype="PCM_16")


def _non_finite(value):
    def write(path):
        x = sine(SR, 0.5)
        x[100] = value
        sf.write(path, x, SR, subtype="FLOAT")

    return write


AUDIO_CASES = [
    Case(
        "audio-missing",
        "audio",
        "no such file",
        MediaError,
        lambda ctx: ((lambda: media.load_audio(ctx.path("none.wav"))), "none.wav"),
        "`<path>: file does not exist`; a builder skips the clip.",
    ),
    Case(
        "audio-empty",
        "audio",
        "0 bytes",
        MediaError,
        lambda ctx: _audio(ctx, lambda p: put(p, b"")),
        "`<path>: file is empty (0 bytes)`.",
    ),
    Case(
        "audio-zero-samples",
        "audio",
        "a valid WAV header with no samples",
        MediaError,
        lambda ctx: _audio(ctx, _zero_samples),
        "`<path>: audio has 0 samples`: never a silent clip.",
    ),
    Case(
        "audio-truncated-wav",
        "audio",
        "a WAV cut short (header declares more data)",
        MediaError,
        lambda ctx: _audio(ctx, lambda p: cut(write_wav(p))),
        "`<path>: truncated WAV: data chunk declares N bytes, file holds M`.",
    ),
    Case(
        "audio-truncated-flac",
        "audio",
        "a FLAC cut short",
        MediaError,
        lambda ctx: _audio(ctx, lambda p: cut(write_wav(p)), "clip.flac"),
        "`<path>: truncated audio` or `cannot decode audio`.",
    ),
    Case(
        "audio-not-audio",
        "audio",
        "text saved as .wav",
        MediaError,
        lambda ctx: _audio(ctx, lambda p: put(p, "not a sound")),
        "`<path>: cannot decode audio (...)`.",
    ),
    Case(
        "audio-nan",
        "audio",
        "a float WAV with a NaN sample",
        MediaError,
        lambda ctx: _audio(ctx, _non_finite(np.nan)),
        "`<path>: audio contains NaN or infinite samples`.",
    ),
    Case(
        "audio-inf",
        "audio",
        "a float WAV with an infinite sample",
        MediaError,
        lambda ctx: _audio(ctx, _non_finite(np.inf)),
        "`<path>: audio contains NaN or infinite samples`.",
    ),
]


def _video(ctx, write, read=video.load_video_frame, name="clip.mp4", **kw):
    path = ctx.path(f"video/{name}")
    write(path)
    return (lambda: read(path, **kw)), path


def _silent_clip(path):
    write_clip(path, n_frames=6, fps=6)


def _sound_only(path):
    s = sine(16000, 1.0)
    write_clip(path, n_frames=0, audio=(s[None], 16000), acodec="pcm_s16le")


def _garbage(path):
    put(path, np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())


VIDEO_CASES = [
    Case(
        "video-missing",
        "video",
        "no such file",
        MediaError,
        lambda ctx: ((lambda: video.load_video_frame(ctx.path("no.mp4"))), "no.mp4"),
        "`<path>: file does not exist`.",
    ),
    Case(
        "video-empty",
        "video",
        "0 bytes",
        MediaError,
        lambda ctx: _video(ctx, lambda p: put(p, b"")),
        "`<path>: file is empty (0 bytes)`.",
    ),
    Case(
        "video-not-a-video",
        "video",
        "random bytes saved as .mp4",
        MediaError,
        lambda ctx: _video(ctx, _garbage),
        "`<path>: cannot open video (...)`.",
    ),
    Case(
        "video-truncated",
        "video",
        "an mp4 cut in half (its index is lost)",
        MediaError,
        lambda ctx: _video(ctx, lambda p: cut(write_clip(p))),
        "`<path>: cannot open video` / `cannot decode video`.",
    ),
    Case(
        "video-no-audio-stream",
        "video",
        "the sound is read from a clip without an audio stream",
        MediaError,
        lambda ctx: _video(ctx, _silent_clip, video.load_video_audio),
        "`<path>: no audio stream`: put the sound in audio/<id>.wav.",
    ),
    Case(
        "video-no-video-stream",
        "video",
        "the frame is read from a sound-only file",
        MediaError,
        lambda ctx: _video(ctx, _sound_only, name="clip.mkv"),
        "`<path>: no video stream`: put the frame in frames/<id>.jpg.",
    ),
    Case(
        "video-keyframe-past-end",
        "video",
        "the test csv's keyframe is past the clip's last frame",
        MediaError,
        lambda ctx: _video(ctx, _silent_clip, keyframe=50),
        "`<path>: keyframe 50 is past the clip's last frame (6 frames)`.",
    ),
    Case(
        "video-keyframe-negative",
        "video",
        "a negative keyframe",
        MediaError,
        lambda ctx: _video(ctx, _silent_clip, keyframe=-1),
        "`<path>: keyframe -1 is negative`.",
    ),
]
