"""Maps over a whole video (`avkd_jax.localize_video`): maps/s and frames/s on this machine.

    python benchmarks/localize_video.py                      # 10 s, 25 fps, batch 1 and 16
    python benchmarks/localize_video.py --seconds=30 --batch_sizes=16 --fps=8

A random-weight student of configs/synthetic.py's shapes (160² images, 1.5 s of sound, a
quarter-width ResNet18 pair) maps a video of the synthetic world written first (256²
frames of two objects crossing, AAC sound). Pass 1 (decode every frame, `--fps` maps a
second on the device, `--batch_size` at a time) and pass 2 (decode again, draw each frame's
map, encode H.264, copy the sound) are timed apart; one warm-up clip compiles each batch
shape first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import av
import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from train_step import cpu_name, load_config

from avkd_jax import localize, localize_video, models
from avkd_jax.datasets import synthetic_world
from avkd_jax.datasets.synthetic_world import sound as world_sound
from avkd_jax.eval import protocol

SIZE = synthetic_world.IMAGE_SIZE


def random_run(config) -> localize.Run:
    """A student of `config`'s shapes with random weights (no workdir)."""
    model = models.create_model(config)
    variables = models.init_variables(model, config, jax.random.key(0))
    return localize.Run(config, model, variables, 0, "random")


def write_video(path: str, seconds: float, rate: int, sample_rate: int) -> str:
    """The synthetic world's background with two objects crossing it, and one's sound."""
    rng = np.random.default_rng(0)
    background = synthetic_world.render_background(rng)
    count = int(seconds * rate)
    xs = np.round(np.linspace(0, SIZE - 128, count)).astype(int)
    n = int(seconds * sample_rate)
    pcm = world_sound.to_int16(
        synthetic_world.add_background_noise(rng, synthetic_world.synthesize_sound(rng, 0, n))
    )
    with av.open(path, "w") as c:
        vs = c.add_stream("libx264", rate=rate)
        vs.width = vs.height = SIZE
        vs.pix_fmt = "yuv420p"
        st = c.add_stream("aac", rate=sample_rate, layout="mono")
        for i, x in enumerate(xs):
            frame = background.copy()
            for k, box in enumerate([[x, 0, x + 128, 128], [SIZE - 128 - x, 128, SIZE - x, 256]]):
                synthetic_world.render_object(np.random.default_rng(k), k, frame, box)
            c.mux(vs.encode(av.VideoFrame.from_ndarray(frame, "rgb24")))
        c.mux(vs.encode())
        x = pcm.astype(np.float32)[None] / 32768
        for i in range(0, n, 1024):
            chunk = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, i : i + 1024]), "fltp", "mono"
            )
            chunk.sample_rate, chunk.pts = sample_rate, i
            c.mux(st.encode(chunk))
        c.mux(st.encode())
    return path


class _Count:
    def update(self, n: int = 1) -> None:
        pass


def time_render(run, clip: str, out: str, fps: float, batch_size: int) -> dict:
    """Seconds of pass 1 (maps) and pass 2 (the drawn video), with their counts."""
    streams = localize_video.probe(clip)
    maps_file = out + ".maps"
    start = time.perf_counter()
    with open(maps_file, "wb") as sink:
        times, frames, _, count, size = localize_video.make_maps(
            run, clip, streams, fps, batch_size, "AVC", None, sink, _Count()
        )
    maps_s = time.perf_counter() - start
    shape = (len(times), protocol.MAP_SIZE, protocol.MAP_SIZE)
    maps = np.memmap(maps_file, np.float32, "r", shape=shape)
    start = time.perf_counter()
    drawn = localize_video.draw_video(clip, out, maps, frames, size, streams, _Count())
    draw_s = time.perf_counter() - start
    del maps
    os.unlink(maps_file)
    return {"maps": len(times), "frames": count, "maps_s": maps_s, "drawn": drawn, "draw_s": draw_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="video length")
    p.add_argument("--rate", type=int, default=25, help="the video's frames per second")
    p.add_argument("--fps", type=float, default=4.0, help="maps per second of video")
    p.add_argument("--batch_sizes", default="1,16", help="comma-separated")
    args = p.parse_args(argv)
    config = load_config("synthetic")
    run = random_run(config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_video(
            os.path.join(tmp, "clip.mp4"), args.seconds, args.rate, config.sample_rate
        )
        warm = write_video(os.path.join(tmp, "warm.mp4"), 1.0, args.rate, config.sample_rate)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            time_render(run, warm, os.path.join(tmp, "warm_out.mp4"), args.fps, batch)
            r = time_render(run, clip, os.path.join(tmp, "out.mp4"), args.fps, batch)
            print(f"# batch {batch}: {r}", file=sys.stderr, flush=True)
            rows.append((batch, r))
    cores = os.cpu_count()
    print(f"\n{cpu_name()}, {cores} cores; jax {jax.__version__} on {jax.default_backend()}")
    print(
        f"configs/synthetic.py shapes ({config.image_size}² images, {config.audio_seconds:g} s "
        f"of sound), random weights; a {args.seconds:g} s {SIZE}² video at {args.rate} fps, "
        f"{args.fps:g} maps/s\n"
    )
    print(
        "| batch | maps | pass 1: maps/s | pass 1: decoded frames/s | pass 2: frames drawn/s "
        "| total s | video s per s |"
    )
    print("|---|---|---|---|---|---|---|")
    for batch, r in rows:
        total = r["maps_s"] + r["draw_s"]
        print(
            f"| {batch} | {r['maps']} | {r['maps'] / r['maps_s']:.1f} | "
            f"{r['frames'] / r['maps_s']:.1f} | {r['drawn'] / r['draw_s']:.1f} | {total:.1f} | "
            f"{args.seconds / total:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
