"""Where is the sound, over a whole video? A trained student's map every 1/fps seconds.

    python -m avkd_jax.localize --checkpoint=runs/synthetic_demo --video=clip.mp4 \\
        --out=clip_localized.mp4 --fps=4 --batch_size=16

writes (docs/video.md)
  clip_localized.mp4: every frame of the video, upright, with the map of the latest sampled
    frame over it (a map is held until the next one: never interpolated), and the video's
    own sound (its packets copied, or re-encoded as AAC when mp4 cannot hold its codec);
  clip_localized.npz: `maps` float32 [T, 224, 224] (the protocol's maps, as `localize`
    writes one), `times` float64 [T] (seconds from the first frame), `frames` int64 [T]
    (the sampled frames' indices), `raw` float32 [T, h, w] (the student's similarity on
    its own grid, before upsampling and normalisation; the student's even for OG-AVC) and
    `peaks` float32 [T] (its maximum: how strongly the visible source sounds, to the model);
  clip_localized_peak.png: `peaks` over `times`.

A map is made of the first frame at or after each multiple of 1/fps seconds and of the
`config.audio_seconds` of sound centred on that frame, cut from the whole track; near the
ends the part inside the track is tiled to length (`media.crop_or_tile`, as a short
training clip is). The file is read twice, one frame at a time: once to make the maps
(on the device, `batch_size` at a time), once to draw them. Only the sound track (int16
at `config.sample_rate`), the student's small grids and the maps (in a temporary file
beside the output) grow with the video.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import zipfile

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from avkd_jax import files, localize, pictures
from avkd_jax.datasets import media, video
from avkd_jax.errors import MediaError
from avkd_jax.eval import fusion, protocol

DEFAULT_FPS = 4.0
DEFAULT_BATCH_SIZE = 16
# Audio codecs an mp4 holds as they are; others are re-encoded as AAC.
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"})
AAC_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
# Frame times within this of a multiple of 1/fps count as on it (time bases round).
TIME_SLACK = 1e-6
PLAIN_PROGRESS_LINES = 4


@dataclasses.dataclass(frozen=True)
class Streams:
    """What `render` needs to know of a video before decoding it.

    Attributes:
      frames: the video stream's frame count from its header (0: unknown).
      audio_start: the audio stream's start in seconds (its first sample's time).
      audio_codec: the audio stream's codec name.
    """

    path: str
    frames: int
    audio_start: float
    audio_codec: str


def probe(path) -> Streams:
    """Checks that `path` is a video with a video and an audio stream.

    Raises:
      MediaError: missing, empty or unreadable file, or no video or no audio stream.
    """
    path = media.check_file(path)
    with video.open_video(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        if not container.streams.audio:
            raise MediaError(path, "no audio stream: a map over time needs the video's sound")
        vs, aus = container.streams.video[0], container.streams.audio[0]
        start = float(aus.start_time * aus.time_base) if aus.start_time is not None else 0.0
        return Streams(path, int(vs.frames or 0), start, aus.codec_context.name)


def upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame `[H, W, 3]` turned as its display matrix says it is shown.

    Args:
      rotation: the display matrix's angle, counter-clockwise in degrees (PyAV's
        `VideoFrame.rotation`), rounded to a multiple of 90.
    Returns:
      `[H, W, 3]`, or `[W, H, 3]` for a quarter turn.
    """
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def frame_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame → uint8 `[H, W, 3]` RGB, upright."""
    return upright(frame.to_ndarray(format="rgb24"), frame.rotation)


class Sampler:
    """Which frames to map, decided frame by frame: the first at or after each multiple
    of 1/fps seconds (counted from the first frame), each frame once."""

    def __init__(self, fps: float):
        self.fps, self.first, self.due = fps, None, 0.0

    def take(self, t: float) -> bool:
        """Whether the frame at `t` seconds (times increasing) is mapped."""
        self.first = t if self.first is None else self.first
        if t - self.first < self.due - TIME_SLACK:
            return False
        self.due = (np.floor((t - self.first) * self.fps + TIME_SLACK) + 1) / self.fps
        return True


def sample_indices(times, fps: float) -> list[int]:
    """`Sampler`'s frames of frame times `[F]` (seconds, increasing): indices `[T]`."""
    sampler = Sampler(fps)
    return [i for i, t in enumerate(times) if sampler.take(float(t))]


def audio_window(track: np.ndarray, centre: float, sample_rate: int, samples: int):
    """The `samples` of `track` centred on `centre` seconds, as a short clip gets them.

    The window is [c − samples // 2, c − samples // 2 + samples), c = round(centre ·
    sample_rate); its part inside the track is tiled to length (`media.crop_or_tile`, as
    a training clip shorter than the model's seconds is), silence when none is.

    Args:
      track: int16 `[N]`, the whole sound track.
    Returns:
      int16 `[samples]`.
    """
    lo = int(round(centre * sample_rate)) - samples // 2
    part = track[max(lo, 0) : max(lo + samples, 0)]
    if part.shape[0] == 0:
        return np.zeros([samples], np.int16)
    return media.crop_or_tile(part, samples).astype(np.int16, copy=False)


def output_paths(out_mp4: str) -> dict:
    """{'mp4', 'npz', 'plot'}: `out_mp4` and the `.npz` and `_peak.png` beside it."""
    stem = os.path.splitext(out_mp4)[0]
    return {"mp4": out_mp4, "npz": stem + ".npz", "plot": stem + "_peak.png"}


class _PlainProgress:
    """A few lines on stderr where a bar cannot be drawn (not a terminal)."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.done, self.said = total, desc, 0, 0

    def update(self, n: int = 1) -> None:
        self.done += n
        step = max(1, -(-self.total // PLAIN_PROGRESS_LINES)) if self.total else 500
        if self.done // step > self.said:
            self.said = self.done // step
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc}: {self.done}{of} frames", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    """A tqdm bar over frames on a terminal, else a few plain lines, or nothing."""
    if not enabled:
        return _NoProgress()
    if not sys.stderr.isatty():
        return _PlainProgress(total, desc)
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top

    return tqdm(total=total or None, desc=desc, unit="frame", file=sys.stderr)


class _Batcher:
    """Model inputs gathered `batch_size` at a time; each full batch's maps are appended
    to `sink` (a binary file) and the student's raw maps to `raw`. The last batch is padded so that
    one compiled shape serves every batch."""

    def __init__(self, run, variant, objects, batch_size, sink):
        self.run, self.variant, self.objects = run, variant, objects
        self.batch_size, self.sink = batch_size, sink
        self.images, self.pcms, self.raw = [], [], []

    def add(self, image: np.ndarray, pcm: np.ndarray) -> None:
        self.images.append(image)
        self.pcms.append(pcm)
        if len(self.images) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        n = len(self.images)
        if not n:
            return
        images, pcms = np.stack(self.images), np.stack(self.pcms)
        pad = [(0, self.batch_size - n)]
        images = np.pad(images, pad + [(0, 0)] * 3)
        pcms = np.pad(pcms, pad + [(0, 0)])
        maps, raw = localize.localization_maps(self.run, images, pcms, self.variant, self.objects)
        self.sink.write(np.ascontiguousarray(maps[:n], np.float32).tobytes())
        self.raw.extend(raw[:n])
        self.images, self.pcms = [], []


def _stream_setup(stream) -> None:
    stream.thread_type = "AUTO"  # Frame threads: decoding keeps up with the model.


def make_maps(run, path, streams: Streams, fps, batch_size, variant, objects, sink, bar):
    """Pass 1: the sampled frames' maps, appended to `sink` in order.

    Returns:
      (times float64 [T] from the first frame, frames int64 [T], the student's raw maps
      float32 [T, h, w], the decoded frame count, the upright frames' (height, width)).
    """
    config = run.config
    track = video.load_video_track(path, config.sample_rate)
    samples = int(round(config.sample_rate * config.audio_seconds))
    batcher = _Batcher(run, variant, objects, batch_size, sink)
    sampler = Sampler(fps)
    times, picked, count, size = [], [], 0, None
    with video.open_video(path) as container:
        stream = container.streams.video[0]
        _stream_setup(stream)
        try:
            for t, frame in video.frame_times(container, stream):
                if sampler.take(t):
                    native = frame_rgb(frame)
                    size = size or native.shape[:2]
                    stored = media.image_array(
                        Image.fromarray(native), localize.STORED_SHORTER_SIDE
                    )
                    image = localize.model_image(stored, config.image_size)
                    pcm = audio_window(track, t - streams.audio_start, config.sample_rate, samples)
                    batcher.add(image, pcm)
                    times.append(t - sampler.first)
                    picked.append(count)
                count += 1
                bar.update()
        except MediaError:
            raise
        except video.decode_errors() as e:
            raise MediaError(path, f"cannot decode video ({e})") from None
    if not count:
        raise MediaError(path, "video stream decodes to no frame")
    batcher.flush()
    return (
        np.asarray(times, np.float64),
        np.asarray(picked, np.int64),
        np.asarray(batcher.raw, np.float32),
        count,
        size,
    )


def _video_output(container, template, width: int, height: int):
    """An H.264 stream of the input's rate and time base (timestamps are copied)."""
    rate = template.average_rate or template.guessed_rate or 25
    out = container.add_stream("libx264", rate=rate)
    out.width, out.height = width, height
    # 4:2:0 needs even sides; 4:4:4 keeps an odd-sized video's size.
    out.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    out.time_base = template.time_base
    out.codec_context.time_base = template.time_base
    out.options = {"crf": "18", "preset": "veryfast"}
    return out


def _audio_output(container, template, remux: bool):
    if remux:
        return container.add_stream_from_template(template)
    # A container's "1 channels" (no order given) is no layout for AAC: the count's
    # usual one is; other counts are mixed to stereo.
    layout = AAC_LAYOUTS.get(len(template.layout.channels), "stereo")
    return container.add_stream("aac", rate=template.rate, layout=layout)


def _mux_audio(out, stream, packet, remux: bool) -> None:
    if remux:
        if packet.dts is None:  # The demuxer's end-of-stream marker.
            return
        packet.stream = stream
        out.mux(packet)
        return
    for frame in packet.decode():
        out.mux(stream.encode(frame))


class _Painter:
    """Frames → frames with a map over them; the map's colours at the frame's size are
    made once per sampled map and reused by the frames that hold it."""

    def __init__(self, maps, frames):
        self.maps, self.frames = maps, frames
        self.key, self.colours = None, None

    def paint(self, index: int, rgb: np.ndarray) -> np.ndarray:
        k = max(int(np.searchsorted(self.frames, index, side="right")) - 1, 0)
        key = (k, rgb.shape)
        if key != self.key:
            h, w = rgb.shape[:2]
            self.key = key
            self.colours = pictures.heat_rgb(pictures.resize_map(self.maps[k], h, w))
        return pictures.blend(rgb, self.colours)


def draw_video(path, out_mp4, maps, frames, size, streams: Streams, bar) -> int:
    """Pass 2: every frame with its held map over it, and the sound, into `out_mp4`.

    Args:
      maps: `[T, 224, 224]` (a memmap), frames: int64 `[T]`.
      size: (height, width) of the upright frames.
    Returns:
      the frames written.
    """
    import av  # pylint: disable=g-import-not-at-top

    remux = streams.audio_codec in MP4_AUDIO_CODECS
    painter, count = _Painter(maps, frames), 0
    with (
        video.open_video(path) as inp,
        files.atomic_path(out_mp4, keep_extension=True) as tmp,
        av.open(tmp, "w", format="mp4") as out,
    ):
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        _stream_setup(vin)
        # Every stream before the first packet: the header is written then.
        vout = _video_output(out, vin, size[1], size[0])
        aout = _audio_output(out, ain, remux)
        try:
            for packet in inp.demux(vin, ain):
                if packet.stream is ain:
                    _mux_audio(out, aout, packet, remux)
                    continue
                for frame in packet.decode():
                    rgb = painter.paint(count, frame_rgb(frame))
                    picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    picture.pts, picture.time_base = frame.pts, vin.time_base
                    out.mux(vout.encode(picture))
                    count += 1
                    bar.update()
            out.mux(vout.encode())
            if not remux:
                out.mux(aout.encode())
        except MediaError:
            raise
        except video.decode_errors() as e:
            raise MediaError(path, f"cannot decode video ({e})") from None
    return count


def write_npz(path: str, maps_file: str, count: int, **arrays) -> str:
    """An `.npz` whose `maps` float32 `[count, 224, 224]` is copied from the raw file
    `maps_file` piece by piece (never whole in memory), with the small `arrays`."""
    size = protocol.MAP_SIZE
    header = {"descr": "<f4", "fortran_order": False, "shape": (count, size, size)}
    with (
        files.atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as z,
    ):
        with z.open("maps.npy", "w", force_zip64=True) as f, open(maps_file, "rb") as src:
            np.lib.format.write_array_header_1_0(f, header)
            while chunk := src.read(1 << 22):
                f.write(chunk)
        for name, value in arrays.items():
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(value))
    return path


def peak_plot(times, peaks, path: str, title: str = "") -> str:
    """A small PNG of the raw similarity maximum `peaks` [T] over `times` [T] seconds."""
    fig = Figure(figsize=(6, 2.4))
    ax = fig.subplots()
    ax.plot(times, peaks, marker=".", linewidth=1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("peak similarity")
    ax.grid(alpha=0.3)
    ax.set_title(title or "how strongly the visible source sounds", fontsize=9)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    with files.atomic_path(path, keep_extension=True) as tmp:
        fig.savefig(tmp, dpi=pictures.DPI)
    return path


def _check_args(variant: str, fps: float, batch_size: int, out_mp4: str) -> None:
    if variant not in localize.VARIANTS:
        raise ValueError(f"--variant={variant}: expected one of {', '.join(localize.VARIANTS)}")
    if not fps > 0:
        raise ValueError(f"--fps={fps}: must be positive")
    if batch_size < 1:
        raise ValueError(f"--batch_size={batch_size}: must be at least 1")
    if not out_mp4.lower().endswith(".mp4"):
        raise ValueError(f"--out={out_mp4}: a video over time is written as .mp4")


def render(
    run,
    video_path,
    out_mp4,
    *,
    variant: str = fusion.STUDENT,
    fps: float = DEFAULT_FPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    object_npz: str | None = None,
) -> dict:
    """The student's maps over the whole of `video_path`, written beside `out_mp4`.

    Args:
      run: `localize.load_run(workdir)`.
      variant: 'AVC', or 'OG-AVC' (the run's object model, or `object_npz`).
      fps: maps per second of video.
      batch_size: frames mapped at once on the device.
      progress: bars over the frames on stderr (plain lines when it is not a terminal).
    Returns:
      {'mp4', 'npz', 'plot'}: the paths written; 'maps' (T), 'frames' (decoded).
    Raises:
      ValueError: a bad variant, fps, batch size or output name.
      MediaError: an unreadable video, or one without a video or audio stream.
      RunError: OG-AVC without an object model.
    """
    out_mp4 = os.fspath(out_mp4)
    _check_args(variant, fps, batch_size, out_mp4)
    streams = probe(video_path)
    objects = localize.object_model(run, object_npz) if variant == fusion.OG else None
    paths = output_paths(out_mp4)
    os.makedirs(os.path.dirname(os.path.abspath(out_mp4)), exist_ok=True)
    maps_file = f"{paths['npz']}.maps.tmp.{os.getpid()}"  # Removed however this ends.
    try:
        bar = _progress(streams.frames, "maps", progress)
        with open(maps_file, "wb") as sink:
            times, frames, raw, count, frame_size = make_maps(
                run, streams.path, streams, fps, batch_size, variant, objects, sink, bar
            )
        bar.close()
        size = protocol.MAP_SIZE
        maps = np.memmap(maps_file, np.float32, "r", shape=(len(times), size, size))
        bar = _progress(count, "video", progress)
        drawn = draw_video(streams.path, out_mp4, maps, frames, frame_size, streams, bar)
        bar.close()
        del maps
        peaks = raw.max(axis=(1, 2))
        arrays = dict(times=times, frames=frames, peaks=peaks, raw=raw)
        write_npz(paths["npz"], maps_file, len(times), **arrays)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(maps_file)
    peak_plot(times, peaks, paths["plot"], f"{variant}: {os.path.basename(streams.path)}")
    return {**paths, "maps": len(times), "frames": drawn}


def localize_video(checkpoint: str, video_path, out_mp4, **kw) -> dict:
    """`render` with the run of the workdir `checkpoint`; its config.json and the video
    are checked before the model is loaded.

    Raises:
      as `render`, and RunError: no config.json or no checkpoint in `checkpoint`.
    """
    _check_args(
        kw.get("variant", fusion.STUDENT),
        kw.get("fps", DEFAULT_FPS),
        kw.get("batch_size", DEFAULT_BATCH_SIZE),
        os.fspath(out_mp4),
    )
    localize.load_config(checkpoint)
    probe(video_path)
    return render(localize.load_run(checkpoint), video_path, out_mp4, **kw)
