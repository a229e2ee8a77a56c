"""The bad-input cases of the localize and eval entry points."""

import os

import av
import numpy as np
from helpers.configs import tiny_config

from avkd_jax import (
    localize,
    localize_video,
    train,
)
from avkd_jax.errors import MediaError
from bad_inputs.cases import (
    Case,
    cut,
    localize_files,
    workdir_with_config,
    write_image,
    write_wav,
)


def _localize(ctx, **kw):
    workdir = workdir_with_config(ctx)
    image, audio = localize_files(ctx)
    kw = {"image": image, "audio": audio, **kw}
    return lambda: localize.localize(workdir, out=ctx.path("out/map"), **kw)


def _localize_broken(ctx, which):
    if which == "image":
        bad = cut(write_image(ctx.path("broken.jpg")), keep=300)
    else:
        bad = cut(write_wav(ctx.path("broken.wav")), keep=60)
    return _localize(ctx, **{which: bad}), bad


def _localize_bad_config(ctx):
    workdir = ctx.path("run")
    os.makedirs(workdir)
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        f.write("{")
    image, audio = localize_files(ctx)
    return (lambda: localize.localize(workdir, image=image, audio=audio)), f"{path}: not valid JSON"


def _og_without_objects(ctx):
    workdir = workdir_with_config(ctx, object_npz=None)
    config = localize.load_config(workdir)
    run = localize.Run(config, None, None, 0, workdir)
    return (lambda: localize.object_model(run)), f"{workdir}/config.json has no object_npz"


def _no_checkpoint(ctx):
    workdir = workdir_with_config(ctx)
    return (lambda: localize.load_run(workdir)), f"No checkpoint in {workdir}/checkpoints"


def _video_without_sound(ctx):
    workdir = workdir_with_config(ctx)
    path = ctx.path("silent.mp4")
    with av.open(path, "w") as c:
        stream = c.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(4):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros([32, 32, 3], np.uint8))))
        c.mux(stream.encode())
    out = ctx.path("out/silent_localized.mp4")
    return (lambda: localize_video.localize_video(workdir, path, out)), f"{path}: no audio stream"


def _eval_without_checkpoint(ctx):
    workdir = ctx.path("run")
    config = tiny_config(ctx.tmp)
    return (
        lambda: train.evaluate_workdir(config, workdir)
    ), f"No checkpoint in {workdir}/checkpoints"


LOCALIZE_CASES = [
    Case(
        "localize-not-a-workdir",
        "localize",
        "`--checkpoint` is a folder without config.json",
        localize.RunError,
        lambda ctx: (
            lambda: localize.localize(ctx.path("nowhere"), image="x.jpg", audio="y.wav"),
            f"{ctx.tmp}/nowhere/config.json does not exist",
        ),
        "Give a training workdir (or import the authors' checkpoint with --mode=import).",
    ),
    Case(
        "localize-config-not-json",
        "localize",
        "the workdir's config.json is not JSON",
        localize.RunError,
        _localize_bad_config,
        "`<config.json>: not valid JSON`.",
    ),
    Case(
        "localize-no-checkpoint",
        "localize",
        "a workdir with config.json but no checkpoint",
        localize.RunError,
        _no_checkpoint,
        "`No checkpoint in <workdir>/checkpoints: train first, or --mode=import`.",
    ),
    Case(
        "eval-no-checkpoint",
        "localize",
        "`--mode=eval` on a workdir without a checkpoint",
        FileNotFoundError,
        _eval_without_checkpoint,
        "`No checkpoint in <workdir>/checkpoints: train first`.",
    ),
    Case(
        "localize-broken-image",
        "localize",
        "`--image` is a truncated JPEG",
        MediaError,
        lambda ctx: _localize_broken(ctx, "image"),
        "`error: <path>: cannot decode image (...)`, exit status 1.",
    ),
    Case(
        "localize-broken-audio",
        "localize",
        "`--audio` is a WAV cut inside its header",
        MediaError,
        lambda ctx: _localize_broken(ctx, "audio"),
        "`error: <path>: ...`, exit status 1.",
    ),
    Case(
        "localize-missing-video",
        "localize",
        "`--video` names no file",
        MediaError,
        lambda ctx: (_localize(ctx, image=None, audio=None, video_path=ctx.path("v.mp4")), "v.mp4"),
        "`error: <path>: file does not exist`.",
    ),
    Case(
        "localize-video-without-sound",
        "localize",
        "`--video` (with an `--out` ending in .mp4) has no audio stream",
        MediaError,
        _video_without_sound,
        "`error: <path>: no audio stream: a map over time needs the video's sound`.",
    ),
    Case(
        "localize-image-and-video",
        "localize",
        "both `--image` and `--video`",
        ValueError,
        lambda ctx: (_localize(ctx, video_path="v.mp4"), "--image and --audio, or --video"),
        "A usage error: give --image and --audio, or --video.",
    ),
    Case(
        "localize-image-without-audio",
        "localize",
        "`--image` without `--audio`",
        ValueError,
        lambda ctx: (_localize(ctx, audio=None), "--image and --audio together"),
        "A usage error.",
    ),
    Case(
        "localize-unknown-variant",
        "localize",
        "`--variant=OG-DETR`",
        ValueError,
        lambda ctx: (_localize(ctx, variant="OG-DETR"), "--variant=OG-DETR"),
        "A usage error listing AVC, OG-AVC.",
    ),
    Case(
        "localize-og-without-object-model",
        "localize",
        "`--variant=OG-AVC` for a run without `object_npz`",
        localize.RunError,
        _og_without_objects,
        "Pass --object_npz=resnet18.npz.",
    ),
]
