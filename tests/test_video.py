"""avkd_jax.datasets.video: frames and sound of clips written here with PyAV."""

import numpy as np
import pytest
from helpers.media import N3, SR, centre_sine, grey, sine, write_clip

from avkd_jax.datasets import video
from avkd_jax.errors import MediaError


@pytest.mark.parametrize("name,vcodec", [("clip.mp4", "libx264"), ("clip.mkv", "mpeg4")])
def test_middle_frame_and_keyframe(tmp_path, name, vcodec):
    path = write_clip(tmp_path / name, n_frames=24, fps=12, vcodec=vcodec)
    # 24 frames at 12 fps: the stream lasts 2 s, its middle (1 s) is frame 12's timestamp.
    frame = video.load_video_frame(path, shorter_side=None)
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert abs(frame.mean() - grey(12)) < 3
    assert abs(video.load_video_frame(path, keyframe=5, shorter_side=None).mean() - grey(5)) < 3
    assert abs(video.load_video_frame(path, keyframe=0, shorter_side=None).mean() - grey(0)) < 3
    # The shorter side goes to 256 as for frames/*.jpg: 64×48 → 341×256.
    assert video.load_video_frame(path).shape == (256, 341, 3)
    with pytest.raises(MediaError) as info:
        video.load_video_frame(path, keyframe=24)
    assert info.value.reason == "keyframe 24 is past the clip's last frame (24 frames)"


def test_middle_frame_between_two_frames_takes_the_nearest(tmp_path):
    # 9 frames at 3 fps: 3 s, middle 1.5 s, frames at 1.333 and 1.667 → tie → the earlier (4).
    path = write_clip(tmp_path / "odd.mp4", n_frames=9, fps=3)
    assert abs(video.load_video_frame(path, shorter_side=None).mean() - grey(4)) < 3
    # 10 frames at 4 fps: 2.5 s, middle 1.25 s is frame 5's timestamp.
    path = write_clip(tmp_path / "even.mp4", n_frames=10, fps=4)
    assert abs(video.load_video_frame(path, shorter_side=None).mean() - grey(5)) < 3


def test_pcm_audio_mono_at_22050_is_bit_exact(tmp_path):
    x = sine(SR, 5.3)
    path = write_clip(tmp_path / "pcm.mkv", audio=(x[None], SR), vcodec="mpeg4", acodec="pcm_s16le")
    y = video.load_video_audio(path)
    pcm = np.round(x * 32767).astype(np.int16)
    start = len(pcm) // 2 - N3 // 2
    assert y.dtype == np.int16 and y.shape == (N3,)
    np.testing.assert_array_equal(y, pcm[start : start + N3])


def test_pcm_audio_short_clip_is_tiled(tmp_path):
    x = sine(SR, 1.3)
    path = write_clip(
        tmp_path / "short.mkv", audio=(x[None], SR), vcodec="mpeg4", acodec="pcm_s16le"
    )
    pcm = np.round(x * 32767).astype(np.int16)
    np.testing.assert_array_equal(
        video.load_video_audio(path), np.concatenate([pcm] * (N3 // len(pcm) + 1))[:N3]
    )


def test_pcm_stereo_48k_is_mixed_and_resampled(tmp_path):
    s = sine(48000, 4.2)
    path = write_clip(
        tmp_path / "st.mkv",
        audio=(np.stack([s, 0.5 * s]), 48000),
        vcodec="mpeg4",
        acodec="pcm_s16le",
    )
    y = video.load_video_audio(path)
    # Channel mean (0.75 s), then 48 k → 22.05 k: the analytic sine within a few LSBs.
    assert np.abs(y - centre_sine(len(s), 48000, gain=0.75)).max() < 6


def test_aac_audio_of_an_mp4_is_centred(tmp_path):
    s = sine(44100, 4.0)
    path = write_clip(tmp_path / "aac.mp4", audio=(np.stack([s, 0.5 * s]), 44100))
    y = video.load_video_audio(path).astype(np.float64)
    ref = centre_sine(len(s), 44100, gain=0.75)
    # AAC is lossy (errors of a few % of full scale), but the centre is the centre: no
    # shift beats zero shift (the encoder's padding past the end is cut).
    errors = {lag: np.abs(y[100:-100] - np.roll(ref, lag)[100:-100]).max() for lag in range(-3, 4)}
    assert min(errors, key=errors.get) == 0
    assert errors[0] < 0.08 * 0.75 * 0.5 * 32767
    assert np.corrcoef(y, ref)[0, 1] > 0.998


def test_errors_name_the_file(tmp_path):
    silent = write_clip(tmp_path / "silent.mp4")
    with pytest.raises(MediaError, match="no audio stream") as info:
        video.load_video_audio(silent)
    assert info.value.path == str(silent)
    sound_only = write_clip(tmp_path / "sound.mp4", n_frames=0, audio=(sine(SR, 1.0)[None], SR))
    with pytest.raises(MediaError) as info:
        video.load_video_frame(sound_only)
    assert (info.value.path, info.value.reason) == (str(sound_only), "no video stream")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        video.load_video_frame(empty)
    with pytest.raises(MediaError, match="does not exist"):
        video.load_video_audio(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="cannot open video"):
        video.load_video_frame(garbage)
    full = write_clip(tmp_path / "full.mp4", audio=(sine(SR, 2.0)[None], SR)).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) // 2])  # The moov atom (the index) is at the end: lost.
    with pytest.raises(MediaError, match="cannot"):
        video.load_video_frame(cut)
    with pytest.raises(MediaError, match="cannot"):
        video.load_video_audio(cut)
