"""Where is the sound? A trained student's map over your own image + audio, or video.

    python -m avkd_jax.localize --checkpoint=runs/synthetic_demo --image=x.jpg --audio=y.wav
    python -m avkd_jax.localize --checkpoint=runs/synthetic_demo --video=clip.mp4 --out=clip
    python -m avkd_jax.localize --checkpoint=runs/synthetic_demo --video=clip.mp4 --out=clip.mp4

writes `PREFIX.png` (the picture at its own size with the map over it) and `PREFIX.npy`
(the map as the evaluation scores it: 224 × 224 float32, min-max normalised), and prints
both paths. The model is rebuilt from `WORKDIR/config.json` and its newest checkpoint that
restores (a damaged newer one is skipped, with a warning); no dataset is needed. Inputs go
through exactly what evaluation does to a test clip: the picture's shorter side to 256 and
a JPEG as the builders store it, then a bicubic resize to the config's square; the sound
mixed to mono, resampled, its centre seconds kept (tiled when shorter). A video gives its
middle frame and the centre of its first audio stream. Any image PIL reads, any audio
libsndfile reads (wav, flac, any rate and channel count), any video ffmpeg reads. An
`--out` ending in .mp4 maps the whole video instead, `--fps` times a second
(`localize_video`, docs/video.md).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys

from avkd_jax import terminal

terminal.import_tensorflow_quietly()  # Before anything else imports it.

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags
from PIL import Image

from avkd_jax import (
    checkpoints,
    errors,
    files,
    input_pipeline,
    models,
    pictures,
    pretrained,
    sharding,
    state,
)
from avkd_jax.checkpoints import load_config
from avkd_jax.datasets import media, video
from avkd_jax.errors import CheckpointRestoreError, MediaError, RunError
from avkd_jax.eval import fusion, protocol

VARIANTS = (fusion.STUDENT, fusion.OG)
STORED_SHORTER_SIDE = 256  # What the builders store (docs/design.md, Data flow).


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained student: its config, model and variables (`{'params', 'batch_stats'}`)."""

    config: ml_collections.ConfigDict
    model: models.AVC
    variables: dict
    step: int
    workdir: str


def load_run(workdir: str) -> Run:
    """The newest checkpoint of `workdir` that restores (a damaged newer one is skipped with a
    warning), with the model its config.json describes.

    Raises:
      RunError: no config.json, or no checkpoint.
      CheckpointRestoreError: no checkpoint restores.
    """
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = load_config(workdir)
    model = models.create_model(config)
    with checkpoints.open_manager(workdir, config) as manager:
        abstract = state.abstract_state(model, config, sharding.create_mesh())
        restored = checkpoints.restore_newest(manager, abstract)
        if restored is None:
            raise RunError(f"No checkpoint in {manager.directory}: train first, or --mode=import.")
    step, restored, _ = restored
    variables = {"params": restored["params"], "batch_stats": restored["batch_stats"]}
    return Run(config, model, variables, step, workdir)


def read_picture(path: str, from_video: bool) -> tuple[np.ndarray, np.ndarray]:
    """(the picture at its own size, the picture as the builders store it: shorter side
    256), both uint8 `[H, W, 3]`; a video's middle frame."""
    if from_video:
        native = video.load_video_frame(path, shorter_side=None)
    else:
        native = media.load_image(path, shorter_side=None)
    stored = media.image_array(Image.fromarray(native), STORED_SHORTER_SIDE)
    return native, stored


def read_sound(path: str, from_video: bool, config) -> np.ndarray:
    """The centre `config.audio_seconds` at `config.sample_rate` as int16 `[N]`."""
    if from_video:
        return video.load_video_audio(path, config.sample_rate, config.audio_seconds)
    return media.load_audio(path, config.sample_rate, config.audio_seconds)


def model_image(stored: np.ndarray, image_size: int) -> np.ndarray:
    """A stored picture (shorter side 256) → the model's uint8 `[S, S, 3]` input, exactly as
    evaluation gets it: JPEG-encoded as the builders store it, decoded by the TFDS image
    feature, resized by `input_pipeline`'s test-time preprocessing."""
    feature = tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")
    decoded = feature.decode_example(media.encode_jpeg(stored))
    example = {"image": decoded}
    out = input_pipeline.eval_preprocess(example, image_size)
    return np.asarray(out["image"])


def object_model(run: Run, npz: str | None = None) -> fusion.ObjectModel:
    """The OG-AVC object model: `npz`, else the run's `config.object_npz`."""
    value = npz or run.config.get("object_npz")
    if not value:
        raise RunError(
            f"--variant={fusion.OG} needs an object model: {run.workdir}/config.json has no "
            "object_npz; pass --object_npz=resnet18.npz (python -m teachers.convert_resnet)"
        )
    builder = None
    if value == pretrained.SYNTHETIC:  # Only its data_dir is used: nothing is read.
        from avkd_jax import datasets  # pylint: disable=g-import-not-at-top

        builder = datasets.get_builder(run.config)
    path = pretrained.resolve_npz(value, builder, run.config)
    variables, width = pretrained.load_object_npz(path)
    conv_impl = run.config.model.get("conv_impl", "auto")
    return fusion.ObjectModel(width, variables, path, conv_impl)


@functools.cache
def _jitted(fn, module):
    """`fn(module, ...)` compiled once per module (Flax modules are hashable)."""
    return jax.jit(functools.partial(fn, module))


def localization_maps(run: Run, images, pcms, variant: str = fusion.STUDENT, objects=None):
    """The protocol maps of a batch of clips, and the student's own.

    Args:
      images: uint8 `[B, S, S, 3]` (`model_image`).
      pcms: int16 `[B, N]` (`read_sound`).
      variant: 'AVC', or 'OG-AVC' (needs `objects`, an `fusion.ObjectModel`).
    Returns:
      (float32 `[B, 224, 224]` min-max normalised, float32 `[B, h, w]`: the student's raw
      similarity on its own grid, before any upsampling or normalisation).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {VARIANTS}")
    raw = np.asarray(_jitted(fusion.model_maps, run.model)(run.variables, images, pcms))
    raw = raw.astype(np.float32)
    avc = protocol.protocol_maps(raw)
    if variant == fusion.STUDENT:
        return avc.astype(np.float32), raw
    obj = protocol.protocol_maps(
        np.asarray(_jitted(fusion.object_maps, objects.trunk)(objects.variables, images))
    )
    fused = fusion.fuse_og(avc, obj, run.config.og_alpha, run.config.og_fusion)
    return protocol.normalize_map(fused).astype(np.float32), raw


def localization_map(run: Run, image, pcm, variant: str = fusion.STUDENT, objects=None):
    """The protocol map of one clip (`localization_maps`): image uint8 `[S, S, 3]`, pcm
    int16 `[N]` → float32 `[224, 224]`, min-max normalised."""
    image, pcm = np.asarray(image)[None], np.asarray(pcm)[None]
    return localization_maps(run, image, pcm, variant, objects)[0][0]


def localize(
    checkpoint: str,
    image: str | None = None,
    audio: str | None = None,
    video_path: str | None = None,
    out: str | None = None,
    variant: str = fusion.STUDENT,
    object_npz: str | None = None,
) -> dict:
    """Localises the sound of `image` + `audio`, or of `video_path`, with the student in the
    workdir `checkpoint`; writes `out`.png and `out`.npy.

    Args:
      out: the output prefix (default: the input's name + '_localized', in the current
        folder).
    Returns:
      {'png': path, 'npy': path, 'map': float32 [224, 224], 'variant', 'step'}.
    Raises:
      ValueError: neither or both of (image and audio) and video.
      RunError: no config.json or no checkpoint in `checkpoint`, or OG-AVC without an
        object model.
      MediaError: an input that is missing, empty, truncated or undecodable (named).
    """
    if video_path and (image or audio):
        raise ValueError("give --image and --audio, or --video, not both")
    if not video_path and not (image and audio):
        raise ValueError("give --image and --audio together, or --video")
    if variant not in VARIANTS:
        raise ValueError(f"--variant={variant}: expected one of {', '.join(VARIANTS)}")
    config = load_config(checkpoint)  # The inputs are checked before the model is loaded.
    picture_file = video_path or image
    native, stored = read_picture(picture_file, bool(video_path))
    pcm = read_sound(video_path or audio, bool(video_path), config)
    run = load_run(checkpoint)
    objects = object_model(run, object_npz) if variant == fusion.OG else None
    heat = localization_map(run, model_image(stored, run.config.image_size), pcm, variant, objects)

    if out is None:
        out = os.path.splitext(os.path.basename(picture_file))[0] + "_localized"
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    png = pictures.save_png(pictures.overlay(native, heat), out + ".png")
    npy = out + ".npy"
    with files.atomic_path(npy) as tmp, open(tmp, "wb") as f:
        np.save(f, heat)
    return {"png": png, "npy": npy, "map": heat, "variant": variant, "step": run.step}


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line's flags: defined only when this module runs as the program, so
    that the modules it calls (`localize_video`) may import it without defining them
    twice."""
    flags.DEFINE_string("checkpoint", None, "A training workdir (config.json + checkpoints/).")
    flags.DEFINE_string("image", None, "A picture (jpg, png, ...); with --audio.")
    flags.DEFINE_string("audio", None, "A sound (wav, flac; any rate and channels); with --image.")
    flags.DEFINE_string("video", None, "A video: its middle frame and the centre of its sound.")
    flags.DEFINE_string(
        "out",
        None,
        "Output prefix for .png and .npy (default: <input>_localized); with --video, a name "
        "ending in .mp4 maps the whole video (docs/video.md).",
    )
    flags.DEFINE_enum("variant", fusion.STUDENT, list(VARIANTS), "Which map to draw.")
    flags.DEFINE_string("object_npz", None, "OG-AVC's ResNet18 .npz (default: the run's).")
    flags.DEFINE_float("fps", 4.0, "With --video and an --out ending in .mp4: maps per second.")
    flags.DEFINE_integer("batch_size", 16, "With --video and an .mp4 --out: frames per model call.")


def _localize_video():
    """`--video` with an `--out` ending in .mp4: the maps over the whole video."""
    from avkd_jax import localize_video  # pylint: disable=g-import-not-at-top

    if FLAGS.image or FLAGS.audio:
        raise ValueError("give --image and --audio, or --video, not both")
    kw = dict(fps=FLAGS.fps, batch_size=FLAGS.batch_size, object_npz=FLAGS.object_npz)
    out = localize_video.localize_video(
        FLAGS.checkpoint, FLAGS.video, FLAGS.out, variant=FLAGS.variant, **kw
    )
    print(f"{FLAGS.variant} maps of {out['maps']} frames: {out['mp4']} {out['npz']} {out['plot']}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.checkpoint:
        raise app.UsageError("--checkpoint=WORKDIR is required.")
    terminal.setup()
    terminal.attach_log_file(None)
    try:
        if FLAGS.video and (FLAGS.out or "").lower().endswith(".mp4"):
            return _localize_video()
        result = localize(
            FLAGS.checkpoint,
            FLAGS.image,
            FLAGS.audio,
            FLAGS.video,
            FLAGS.out,
            FLAGS.variant,
            FLAGS.object_npz,
        )
    except ValueError as e:
        if isinstance(e, (MediaError, errors.PretrainedError, CheckpointRestoreError)):
            sys.exit(f"error: {e}")
        raise app.UsageError(str(e)) from None
    except (RunError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"{result['variant']} map (step {result['step']}): {result['png']} {result['npy']}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
