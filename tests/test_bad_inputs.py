"""The bad-input suite (issue #7): every input the project reads, spoiled the ways disks and
downloads spoil it, and the clear error (or the documented skip) each one gets.

`CASES` is the table: one `Case` per bad input, with the input's kind, what is wrong, the
exception type expected (exactly that type, not a subclass) or `SKIP` for a clip the
builders skip and report, and a maker. The maker writes the bad input under the test's
tmp_path and returns the call that reads it and the text that must name the offending
file or field in the message (or, for a skip, in the `skipped-<split>.tsv` row). The
README's troubleshooting table (docs/README_scaling_and_troubleshooting.md) lists the
same cases. Readers are called directly, as the entry points call them: no training.
"""

import dataclasses
import functools
import json
import os
import shutil
import struct
import types
from collections.abc import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import soundfile as sf
import tensorflow as tf
import torch
from absl import app, flags
from helpers.configs import load_config, tiny_config
from helpers.hints import hinted, write_fake_hints
from helpers.media import sine, write_clip
from helpers.paths import REPO
from helpers.torch_reference import random_avc, write_avc_npz
from ml_collections import config_flags
from PIL import Image, ImageFile

from avkd_jax import (
    checkpoints,
    datasets,
    input_pipeline,
    localize,
    models,
    pretrained,
    runtime,
    sharding,
    teacher_hints,
    train,
)
from avkd_jax import state as train_state
from avkd_jax.datasets import (
    av_builder,
    flickr_layout,
    hint_shards,
    sources,
    vggss_annotations,
    video,
)
from avkd_jax.errors import MediaError
from teachers import common, convert_resnet, torch_resnet

# What test_hint_pipeline's fake teacher writes.
FAKE_SPEC = hint_shards.HintSpec("fake", {"audio_hint": (16,), "visual_hint": (5, 5)})
SKIP = "skipped and reported"  # The builders' documented skip (`av_builder.write_split`).
SR = 22050
SYNTHETIC_CONFIG = f"--config={REPO}/configs/synthetic.py"


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
      id: the pytest id.
      kind: the input (config, image, audio, video, list, annotation, tfrecord, hints,
        checkpoint, localize).
      bad: what is wrong with it.
      expected: the exception type raised, or SKIP.
      make: ctx → (the call that reads the input, the text that must name the file or
        field: in the message, or in the skipped-<split>.tsv the call returns).
      advice: what the user sees and does (the README's table).
    """

    id: str
    kind: str
    bad: str
    expected: type | str
    make: Callable
    advice: str


class Ctx:
    """What a maker works with: its own folder and the module's prepared fixtures."""

    def __init__(self, tmp, data_dir, saved_run):
        self.tmp, self.data_dir, self.saved_run = tmp, data_dir, saved_run

    def path(self, name: str) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)


# ------------------------------------------------------------------------- good inputs


def write_image(path, h=40, w=56, ext_format=None):
    pixels = np.random.default_rng(0).integers(0, 256, [h, w, 3], dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=ext_format)
    return str(path)


def write_wav(path, seconds=1.0, rate=SR, subtype="PCM_16"):
    sf.write(path, sine(rate, seconds), rate, subtype=subtype)
    return str(path)


def put(path, data: bytes | str) -> str:
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return str(path)


def cut(path, keep: int | None = None, fraction: float = 0.5) -> str:
    """Truncates a file to `keep` bytes (default: `fraction` of it)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * fraction) if keep is None else keep)
    return str(path)


def parse_config(argv: list[str]):
    """`--config` as main.py defines it (ml_collections, lock_config=True), parsed on a
    private FlagValues so that absl's global flags stay untouched."""
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=["prog", *argv]
    )
    values(["prog", *argv])
    return values.config


def private_dataset(ctx):
    """A copy of the session's prepared tiny dataset (which must stay intact): (config,
    builder, train shard, test shard)."""
    shutil.copytree(ctx.data_dir / "synthetic_av", ctx.tmp / "data" / "synthetic_av")
    config = tiny_config(ctx.tmp / "data")
    builder = datasets.get_builder(config)
    (train_file,) = input_pipeline.split_files(builder, "train")
    (test_file,) = input_pipeline.split_files(builder, "test")
    return config, builder, train_file, test_file


def read_train(config, builder):
    """One epoch of train batches, as the training loop reads them."""
    files = input_pipeline.process_train_files(builder, config)
    ds = input_pipeline.train_dataset(builder, config, 0, config.batch_size)
    return lambda: list(input_pipeline.numpy_batches(ds, files))


def read_test(config, builder):
    return lambda: list(input_pipeline.eval_batches(builder, config, "test", 5))


def with_hints(ctx, mutate=None, spec_edit=None):
    """The private dataset with fake hint shards (test_hint_pipeline's) under tmp/hints:
    (config, builder, hint shard of the train shard, spec file)."""
    config, builder, train_file, _ = private_dataset(ctx)
    config = hinted(config, ctx.tmp / "hints")
    os.makedirs(ctx.tmp / "hints")
    write_fake_hints(builder, "train", str(ctx.tmp / "hints"), mutate=mutate)
    spec_file = hint_shards.spec_path(train_file, "fake", str(ctx.tmp / "hints"))
    if spec_edit:
        with open(spec_file) as f:
            spec = json.load(f)
        with open(spec_file, "w") as f:
            f.write(spec_edit(spec) if callable(spec_edit) else spec_edit)
    return (
        config,
        builder,
        hint_shards.hint_path(train_file, "fake", str(ctx.tmp / "hints")),
        spec_file,
    )


def train_with_hints(config, builder):
    """What training does with hints: sources, counts, then the zipped epoch."""

    def run():
        sources_ = teacher_hints.hint_sources(builder, config, "train")
        teacher_hints.check_counts(builder, "train", sources_)
        files = input_pipeline.process_train_files(builder, config, sources_)
        ds = input_pipeline.train_dataset(builder, config, 0, config.batch_size, sources_)
        return list(input_pipeline.numpy_batches(ds, files))

    return run


def build_split(ctx, split, ids, box_format=None, annotation=None):
    """The builders' per-split path without TFDS: `sources.split_tasks` then
    `av_builder.write_split` into tmp/prepared. Returns a call giving `skipped-<split>.tsv`."""
    root = ctx.tmp / "raw"
    source = sources.SplitSource(
        split, str(root), "list.txt", tuple(ids), {}, box_format, annotation
    )

    def run():
        tasks, prefailed, notes = sources.split_tasks(source, SR, 0.5)
        out = str(ctx.tmp / "prepared")
        kept = list(
            av_builder.write_split("raw", split, tasks, out, prefailed=prefailed, notes=notes)
        )
        with open(av_builder.skipped_path(out, split)) as f:
            report = f.read()
        with open(av_builder.ids_path(out, split)) as f:
            assert [i for i, _ in kept] == f.read().split()
        return report

    return run


def raw_clip(ctx, i, image=True, audio=True):
    root = ctx.tmp / "raw"
    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    paths = {}
    if image:
        paths["image"] = write_image(root / "frames" / f"{i}.jpg")
    if audio:
        paths["audio"] = write_wav(root / "audio" / f"{i}.wav", 0.5)
    return paths


def vggss_json(ctx, entries):
    text = entries if isinstance(entries, str) else json.dumps(entries)
    return put(ctx.path("raw/metadata/vggss.json"), text)


def vggss_build(ctx, bad_entry, bad_id="bad_000002"):
    """A VGG-SS test split of a good clip and `bad_id`, whose json entry is `bad_entry`."""
    raw_clip(ctx, "good_000001"), raw_clip(ctx, bad_id)
    entries = [{"file": "good_000001", "class": "x", "bbox": [[0.1, 0.1, 0.5, 0.5]]}]
    entries += [bad_entry] if bad_entry is not None else []
    path = vggss_json(ctx, entries)
    return build_split(ctx, "test", ["good_000001", bad_id], "vggss", path), path


def flickr_xml(ctx, text: str):
    return put(ctx.path("raw/Annotations/2001.xml"), text)


def workdir_with_config(ctx, **overrides):
    """A workdir holding only the config.json training writes (tiny model)."""
    config = tiny_config(ctx.tmp / "data")
    for k, v in overrides.items():
        config[k] = v
    workdir = ctx.path("run")
    os.makedirs(workdir, exist_ok=True)
    checkpoints.save_config(config, workdir)
    return workdir


def copied_run(ctx):
    """A private copy of the module's saved run (config.json + a step-1 checkpoint)."""
    workdir = str(ctx.tmp / "run")
    shutil.copytree(ctx.saved_run, workdir)
    return workdir, os.path.join(workdir, "checkpoints", "1")


def restore(workdir):
    config = tiny_config(os.path.join(workdir, "unused"))
    manager = checkpoints.checkpoint_manager(workdir, config)
    return lambda: train_state.restore_or_init(
        models.create_model(config), config, sharding.create_mesh(), manager, jax.random.key(0)
    )


def resnet_npz(ctx, edit=None):
    arrays = convert_resnet.torchvision_to_flax(torch_resnet.resnet18(3, 10, 0.125).state_dict())
    if edit:
        edit(arrays)
    path = ctx.path("resnet18.npz")
    convert_resnet.save_npz(path, arrays)
    return path


def load_npz(path):
    return lambda: pretrained.load_resnet18_npz(path, width=0.125)


class _Payload:
    """Unpickling this runs `touch MARKER`: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_pth(ctx):
    marker, pth = ctx.path("pwned"), ctx.path("evil.pth")
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload(marker)}, pth)

    def run():
        try:
            common.load_checkpoint(pth)
        finally:
            assert not os.path.exists(marker), "the checkpoint's code ran"

    return run, pth


def pth_bytes(ctx, data: bytes):
    path = put(ctx.path("weights.pth"), data)
    return (lambda: common.load_checkpoint(path)), path


def localize_files(ctx):
    return write_image(ctx.path("x.jpg")), write_wav(ctx.path("y.wav"))


def load_truncated_images_set(path):
    def run():
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            flickr_layout.load_image(path)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = False

    return run


def hints_as_float32(ctx):
    """Hint shards whose tensors are float32 bytes (twice what the float16 spec says)."""
    config, builder, hint_file, _ = with_hints(ctx)
    records = []
    for raw in tf.data.TFRecordDataset(hint_file).as_numpy_iterator():
        i, hints = hint_shards.decode_example(raw, FAKE_SPEC)
        feature = {"id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[i.encode()]))}
        for name, value in hints.items():
            raw32 = value.astype("<f4").tobytes()
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw32]))
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)))
    with tf.io.TFRecordWriter(hint_file) as w:
        for r in records:
            w.write(r.SerializeToString())
    return train_with_hints(config, builder), hint_file


def misshapen_hints(ctx):
    """Hint shards written with a 6×6 visual map under a spec that says 5×5."""
    config, builder, hint_file, _ = with_hints(ctx)
    spec6 = hint_shards.HintSpec("fake", {"audio_hint": (16,), "visual_hint": (6, 6)})
    ids = [
        hint_shards.decode_example(r, FAKE_SPEC)[0]
        for r in tf.data.TFRecordDataset(hint_file).as_numpy_iterator()
    ]
    with tf.io.TFRecordWriter(hint_file) as w:
        for i in ids:
            hints = {"audio_hint": np.zeros(16), "visual_hint": np.zeros((6, 6))}
            w.write(hint_shards.encode_example(i, hints, spec6))
    return train_with_hints(config, builder), hint_file


def nan_hint(ctx):
    def poison(records):
        i, hints = records[3]
        hints = dict(hints, audio_hint=np.full(16, np.nan))
        return records[:3] + [(i, hints)] + records[4:]

    _, builder, hint_file, spec_file = with_hints(ctx, mutate=poison)
    (train_file,) = input_pipeline.split_files(builder, "train")
    spec = hint_shards.read_spec(spec_file)
    return (lambda: hint_shards.verify_shard(train_file, hint_file, spec)), f"{hint_file}: record 3"


def write_flipped(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))


def cut_at_record(path, records: int):
    """Keeps the first `records` records of a TFRecord file: a clean cut TF cannot see."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    for _ in range(records):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        pos += 8 + 4 + length + 4
    with open(path, "wb") as f:
        f.write(data[:pos])


def distributed(**flag_values):
    values = {"distributed": "auto", "local_device_ids": None}
    values.update({k: None for k in ("coordinator_address", "num_processes", "process_id")})
    values.update(flag_values)
    return types.SimpleNamespace(**values)


# ------------------------------------------------------------------------------ makers


def _config_file(ctx, text):
    return put(ctx.path("my_config.py"), text)


def _unknown_dataset(ctx):
    c = tiny_config(ctx.tmp)
    c.dataset = "audioset"
    return (lambda: datasets.get_builder(c)), "config.dataset 'audioset'"


def _paper_config_no_dirs(ctx):
    c = load_config("flickr10k")
    return (lambda: datasets.get_builder(c)), "config.data_dir and config.manual_dir"


def _paper_config_no_list(ctx):
    c = load_config("vggs10k")
    c.data_dir, c.manual_dir = ctx.path("tfds"), ctx.path("raw")
    return (lambda: datasets.get_builder(c)), "config.dataset_kwargs.train_list='vggss_10k.txt'"


def _unknown_eval_set(ctx):
    c = tiny_config(ctx.tmp)
    c.eval_sets = ("imagenet_test",)
    return (
        lambda: datasets.get_eval_sets(c, builder=object())
    ), "'imagenet_test' in config.eval_sets"


def _batch_not_divisible(ctx):
    config, builder, _, _ = private_dataset(ctx)
    config.input_groups = 3
    return (lambda: input_pipeline.steps_per_epoch(builder, config)), "config.input_groups=3"


def _too_many_groups(ctx):
    config, builder, _, _ = private_dataset(ctx)
    config.input_groups = 4
    return (lambda: input_pipeline.process_train_files(builder, config)), "config.input_groups=4"


def _another_model(ctx):
    workdir = workdir_with_config(ctx)
    c = tiny_config(ctx.tmp / "data")
    c.model.embed_dim = 32
    return (lambda: checkpoints.save_config(c, workdir)), f"{workdir} holds a run with model="


def _another_rate(ctx):
    workdir = workdir_with_config(ctx)
    c = tiny_config(ctx.tmp / "data")
    c.sample_rate = 16000
    return (lambda: checkpoints.save_config(c, workdir)), "sample_rate=16000"


def _corrupt_config_json(ctx):
    workdir = ctx.path("run")
    os.makedirs(workdir)
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        f.write('{"model": {"width": 0.125,')
    return (
        lambda: checkpoints.save_config(tiny_config(ctx.tmp), workdir)
    ), f"{path}: not valid JSON"


def _alpha_without_teachers(ctx):
    c = tiny_config(ctx.tmp)
    c.alpha_audio = 1000.0
    return (lambda: teacher_hints.ensure_hints(None, c, "train")), "config.teachers is empty"


CONFIG_CASES = [
    Case(
        "config-file-missing",
        "config",
        "--config names no file",
        OSError,
        lambda ctx: (
            lambda: parse_config([f"--config={ctx.tmp}/nothere.py"]).batch_size,
            f"{ctx.tmp}/nothere.py",
        ),
        "`Failed loading config file` with the path: fix the --config path.",
    ),
    Case(
        "config-syntax-error",
        "config",
        "the config file is not valid Python",
        SyntaxError,
        lambda ctx: (
            lambda: parse_config(["--config=" + _config_file(ctx, "def get_config(:\n")]),
            "my_config.py",
        ),
        "SyntaxError naming the file and line.",
    ),
    Case(
        "config-unknown-key",
        "config",
        "an override of a field the config does not have (`--config.nope=1`)",
        AttributeError,
        lambda ctx: (lambda: parse_config([SYNTHETIC_CONFIG, "--config.nope=1"]), "nope"),
        "AttributeError naming the key: configs are locked, so a typo never adds a field.",
    ),
    Case(
        "config-misspelt-nested-key",
        "config",
        "`--config.model.widht=0.5`",
        AttributeError,
        lambda ctx: (
            lambda: parse_config([SYNTHETIC_CONFIG, "--config.model.widht=0.5"]),
            'Did you mean "width"',
        ),
        "AttributeError with the nearest field name.",
    ),
    Case(
        "config-wrong-type",
        "config",
        "`--config.batch_size=abc`",
        flags.IllegalFlagValueError,
        lambda ctx: (
            lambda: parse_config([SYNTHETIC_CONFIG, "--config.batch_size=abc"]),
            "--config.batch_size=abc",
        ),
        "IllegalFlagValueError naming the flag and the type it wants.",
    ),
    Case(
        "config-unknown-dataset",
        "config",
        "`config.dataset` names no builder",
        ValueError,
        _unknown_dataset,
        "ValueError listing the datasets: synthetic_av, flickr_soundnet, vggsound.",
    ),
    Case(
        "config-no-data-dirs",
        "config",
        "a paper config without `data_dir` / `manual_dir`",
        ValueError,
        _paper_config_no_dirs,
        "Set --config.data_dir and --config.manual_dir (README, Real data).",
    ),
    Case(
        "config-list-not-found",
        "config",
        "`dataset_kwargs.train_list` is in no metadata folder",
        FileNotFoundError,
        _paper_config_no_list,
        "FileNotFoundError naming the field and every folder looked in: put EZ-VSL's "
        "metadata there, set config.metadata_dir, or give a path.",
    ),
    Case(
        "config-unknown-eval-set",
        "config",
        "`config.eval_sets` names an unknown set",
        ValueError,
        _unknown_eval_set,
        "ValueError listing the known sets.",
    ),
    Case(
        "config-batch-vs-input-groups",
        "config",
        "`batch_size` not divisible by `input_groups`",
        ValueError,
        _batch_not_divisible,
        "Make input_groups divide batch_size.",
    ),
    Case(
        "config-more-groups-than-shards",
        "config",
        "`input_groups` larger than the number of train shards",
        ValueError,
        _too_many_groups,
        "Lower config.input_groups, or rebuild the dataset with more shards.",
    ),
    Case(
        "config-partial-distributed-flags",
        "config",
        "`--coordinator_address` without `--num_processes` / `--process_id`",
        app.UsageError,
        lambda ctx: (
            lambda: runtime.initialize_kwargs(distributed(coordinator_address="h:1"), {}),
            "--num_processes (or $JAX_NUM_PROCESSES)",
        ),
        "UsageError naming the missing flags: give all three, or run under srun / mpirun.",
    ),
    Case(
        "config-hint-weight-without-teachers",
        "config",
        "`alpha_audio` > 0 with `teachers=()`",
        ValueError,
        _alpha_without_teachers,
        "Name the teachers, or set alpha_audio / alpha_visual to 0.",
    ),
    Case(
        "workdir-of-another-model",
        "config",
        "a `--workdir` trained with another `config.model`",
        ValueError,
        _another_model,
        "ValueError naming the workdir and the differing field: use a fresh --workdir.",
    ),
    Case(
        "workdir-of-another-sample-rate",
        "config",
        "a `--workdir` trained at another `sample_rate` (wrong sample rate)",
        ValueError,
        _another_rate,
        "ValueError naming sample_rate: use a fresh --workdir.",
    ),
    Case(
        "workdir-config-json-corrupt",
        "config",
        "the workdir's `config.json` is not JSON",
        ValueError,
        _corrupt_config_json,
        "ValueError naming config.json: use a fresh --workdir.",
    ),
]


def _image(ctx, write):
    path = ctx.path("frames/clip.jpg")
    write(path)
    return (lambda: flickr_layout.load_image(path)), path


def _truncated_png(path):
    write_image(path, ext_format="PNG")
    cut(path, fraction=0.6)


IMAGE_CASES = [
    Case(
        "image-missing",
        "image",
        "no such file",
        MediaError,
        lambda ctx: ((lambda: flickr_layout.load_image(ctx.path("nothing.jpg"))), "nothing.jpg"),
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
    return (lambda: flickr_layout.load_audio(path, SR, 0.5)), path


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
        lambda ctx: ((lambda: flickr_layout.load_audio(ctx.path("none.wav"))), "none.wav"),
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


def _list(ctx, data: bytes, name="train.txt", read=flickr_layout.read_id_list):
    path = ctx.path(f"metadata/{name}")
    with open(path, "wb") as f:
        f.write(data)
    return (lambda: read(path)), path


def _xml(ctx, text):
    path = flickr_xml(ctx, text)
    return (lambda: flickr_layout.parse_flickr_annotation(path)), path


def _json(ctx, text):
    path = vggss_json(ctx, text)
    return (lambda: vggss_annotations.read_vggss_json(path)), path


BOX = "<bbox><type>s</type>{}</bbox>"
ANNOTATION_CASES = [
    Case(
        "list-missing",
        "list",
        "the id list does not exist",
        MediaError,
        lambda ctx: ((lambda: flickr_layout.read_id_list(ctx.path("m/x.txt"))), "m/x.txt"),
        "`<path>: file does not exist`.",
    ),
    Case(
        "list-empty",
        "list",
        "0 bytes",
        MediaError,
        lambda ctx: _list(ctx, b""),
        "`<path>: file is empty (0 bytes)`.",
    ),
    Case(
        "list-no-ids",
        "list",
        "blank lines only",
        MediaError,
        lambda ctx: _list(ctx, b"\n \r\n\n"),
        "`<path>: id list contains no ids`.",
    ),
    Case(
        "list-not-utf8",
        "list",
        "not UTF-8 text (e.g. a binary file)",
        MediaError,
        lambda ctx: _list(ctx, b"\xff\xfe\xfa\x00id"),
        "`<path>: not UTF-8 text`.",
    ),
    Case(
        "list-bad-keyframe",
        "list",
        "a test csv keyframe that is not an integer",
        MediaError,
        lambda ctx: _list(ctx, b"2001,0\r\n2002,x7\r\n", "test.csv", flickr_layout.read_keyframes),
        "`<path>: line 2: keyframe 'x7' is not an integer`.",
    ),
    Case(
        "xml-malformed",
        "annotation",
        "a Flickr XML cut short",
        MediaError,
        lambda ctx: _xml(ctx, "<annotation><object><bbox><xmin>1"),
        "`<path>: malformed XML`; the builder skips the test clip.",
    ),
    Case(
        "xml-no-bbox",
        "annotation",
        "an XML without any <bbox>",
        MediaError,
        lambda ctx: _xml(ctx, "<annotation><object><name>x</name></object></annotation>"),
        "`<path>: no <bbox> element found`.",
    ),
    Case(
        "xml-three-coordinates",
        "annotation",
        "a <bbox> with 3 coordinates",
        MediaError,
        lambda ctx: _xml(
            ctx,
            f"<annotation><object>{BOX.format('<c>1</c><c>2</c><c>3</c>')}</object></annotation>",
        ),
        "`<path>: bbox #1 has 3 coordinate(s) ..., needs 4`.",
    ),
    Case(
        "xml-non-integer",
        "annotation",
        "a coordinate that is not an integer",
        MediaError,
        lambda ctx: _xml(
            ctx,
            "<annotation><object>"
            + BOX.format("<xmin>1</xmin><ymin>2</ymin><xmax>3.5</xmax><ymax>4</ymax>")
            + "</object></annotation>",
        ),
        "`<path>: bbox #1 <xmax>: '3.5' is not an integer`.",
    ),
    Case(
        "json-missing",
        "annotation",
        "vggss.json does not exist",
        MediaError,
        lambda ctx: (
            (lambda: vggss_annotations.read_vggss_json(ctx.path("meta/vggss.json"))),
            "meta/vggss.json: file does not exist",
        ),
        "`<path>: file does not exist` (or set dataset_kwargs.vggss_json).",
    ),
    Case(
        "json-not-json",
        "annotation",
        "vggss.json cut short",
        MediaError,
        lambda ctx: _json(ctx, '[{"file": "a", "bbox": [[0.1, '),
        "`<path>: not valid JSON (...)`.",
    ),
    Case(
        "json-not-a-list",
        "annotation",
        "vggss.json holds an object, not a list",
        MediaError,
        lambda ctx: _json(ctx, '{"file": "a"}'),
        "`<path>: expected a list of entries, found dict`.",
    ),
]


def _skip_corrupt_frame(ctx):
    raw_clip(ctx, "1001")
    bad = raw_clip(ctx, "1002")["image"]
    cut(bad, keep=300)
    return build_split(ctx, "train", ["1001", "1002"]), f"1002\t{bad}\tskipped\tcannot decode image"


def _skip_missing_sound(ctx):
    raw_clip(ctx, "1001"), raw_clip(ctx, "1002", audio=False)
    return build_split(ctx, "train", ["1001", "1002"]), "1002\t" + str(
        ctx.tmp / "raw" / "audio" / "1002.wav"
    ) + "\tskipped\tmissing: no audio/1002{.wav,.flac}"


def _skip_no_annotation(ctx):
    raw_clip(ctx, "2001"), raw_clip(ctx, "2002")
    good = BOX.format("<xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax>")
    flickr_xml(ctx, f"<annotation><object>{good}</object></annotation>")
    ann = str(ctx.tmp / "raw" / "Annotations")
    run = build_split(ctx, "test", ["2001", "2002"], "flickr", ann)
    return run, f"2002\t{ann}/2002.xml\tskipped\tmissing: annotation file does not exist"


def _skip_malformed_entry(ctx):
    bad = {"file": "bad_000002", "bbox": [[0.1, 0.2, 0.3]]}
    run, path = vggss_build(ctx, bad)
    return run, f"bad_000002\t{path}\tskipped\tentry #1: box [0.1, 0.2, 0.3] is not a list of 4"


def _skip_no_entry(ctx):
    run, path = vggss_build(ctx, None)
    return run, f"bad_000002\t{path}\tskipped\tno entry for bad_000002"


def _drop_corrupt_box(ctx):
    bad = {"file": "bad_000002", "bbox": [[0.3, 0.4, 0.7, -2.88e16], [0.1, 0.1, 0.4, 0.4]]}
    run, path = vggss_build(ctx, bad)
    return run, f"bad_000002\t{path}\tbox dropped\tbox #1 [0.3, 0.4, 0.7, -2.88e+16]"


def _drop_nan_box(ctx):
    run, path = vggss_build(ctx, None)
    with open(path) as f:
        text = f.read()[:-1] + ', {"file": "bad_000002", "bbox": [[0.1, NaN, 0.5, 0.5]]}]'
    vggss_json(ctx, text)
    return run, f"bad_000002\t{path}\tbox dropped\tbox #1 [0.1, nan, 0.5, 0.5] has a corrupt"


def _note_entry_without_file(ctx):
    run, path = vggss_build(ctx, {"class": "x", "bbox": [[0, 0, 1, 1]]})
    return run, f"\t{path} entry #1\tnoted\tentry #1 has no 'file' name"


def _all_clips_bad(ctx):
    for i in ("1001", "1002"):
        cut(raw_clip(ctx, i)["audio"], keep=20)
    return build_split(ctx, "train", ["1001", "1002"]), "raw/train: none of the 2 listed clips"


BUILD_CASES = [
    Case(
        "build-corrupt-frame",
        "raw clip",
        "one clip's frame is a truncated JPEG",
        SKIP,
        _skip_corrupt_frame,
        "The clip is skipped; its row in skipped-train.tsv names the file and the reason.",
    ),
    Case(
        "build-missing-sound",
        "raw clip",
        "a clip with a frame but no audio/<id>.wav|flac and no video",
        SKIP,
        _skip_missing_sound,
        "Skipped with `missing: no audio/<id>{.wav,.flac}, no video/<id>{...}`.",
    ),
    Case(
        "build-missing-annotation",
        "raw clip",
        "a Flickr test clip without Annotations/<id>.xml",
        SKIP,
        _skip_no_annotation,
        "Skipped with `missing: annotation file does not exist`.",
    ),
    Case(
        "build-malformed-json-entry",
        "annotation",
        "a vggss.json entry whose box has 3 numbers",
        SKIP,
        _skip_malformed_entry,
        "That clip is skipped (`entry #k: box ... is not a list of 4 numbers`), the rest read.",
    ),
    Case(
        "build-no-json-entry",
        "annotation",
        "a listed VGG-SS test id without a vggss.json entry",
        SKIP,
        _skip_no_entry,
        "Skipped with `no entry for <id>`.",
    ),
    Case(
        "build-corrupt-box",
        "annotation",
        "a box with a coordinate of -2.88e16 (as 12 boxes of the public vggss.json)",
        SKIP,
        _drop_corrupt_box,
        "That box is dropped (`box dropped` row), the clip kept: the reference's maps exactly.",
    ),
    Case(
        "build-nan-box",
        "annotation",
        "a box with a NaN coordinate",
        SKIP,
        _drop_nan_box,
        "That box is dropped (`box dropped` row).",
    ),
    Case(
        "build-entry-without-file",
        "annotation",
        "a vggss.json entry without a `file` name",
        SKIP,
        _note_entry_without_file,
        "A `noted` row naming the entry; no clip is affected.",
    ),
    Case(
        "build-all-clips-bad",
        "raw clip",
        "not one clip of a split can be read",
        ValueError,
        _all_clips_bad,
        "ValueError with the first reasons: check the layout with python -m avkd_jax.datasets.report.",
    ),
]


def _shard(ctx, damage, split="train"):
    config, builder, train_file, test_file = private_dataset(ctx)
    path = train_file if split == "train" else test_file
    damage(path)
    read = read_train if split == "train" else read_test
    return read(config, builder), path


TFRECORD_CASES = [
    Case(
        "tfrecord-truncated",
        "tfrecord",
        "a train shard cut inside a record",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: cut(p, fraction=0.7)),
        "`<shard>: unreadable TFRecord (...)`: delete that dataset's folder and run again.",
    ),
    Case(
        "tfrecord-corrupt-byte",
        "tfrecord",
        "one byte of a train shard flipped",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, write_flipped),
        "`<shard>: unreadable TFRecord (corrupted record at N)`: rebuild.",
    ),
    Case(
        "tfrecord-not-a-tfrecord",
        "tfrecord",
        "a train shard overwritten with other bytes",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: put(p, b"not a tfrecord" * 50)),
        "`<shard>: unreadable TFRecord (... Is this even a TFRecord file?)`.",
    ),
    Case(
        "tfrecord-missing",
        "tfrecord",
        "a train shard deleted",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, os.remove),
        "`<shard>: unreadable TFRecord (... No such file ...)`.",
    ),
    Case(
        "tfrecord-test-truncated",
        "tfrecord",
        "a test shard cut inside a record",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: cut(p, fraction=0.7), "test"),
        "`<shard>: unreadable TFRecord (...)` at evaluation.",
    ),
    Case(
        "tfrecord-emptied",
        "tfrecord",
        "a test shard emptied to 0 bytes (TF reads it as no records)",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: put(p, b""), "test"),
        "`<shard>: 0 records, the dataset's metadata says N`: rebuild.",
    ),
    Case(
        "tfrecord-cut-between-records",
        "tfrecord",
        "a test shard cut cleanly after 7 of its records",
        input_pipeline.ShardError,
        lambda ctx: _shard(ctx, lambda p: cut_at_record(p, 7), "test"),
        "`<shard>: 7 records, the dataset's metadata says 12`: rebuild.",
    ),
]


def _hints(ctx, mutate=None, spec_edit=None, call=train_with_hints, names="hint"):
    config, builder, hint_file, spec_file = with_hints(ctx, mutate, spec_edit)
    target = {"hint": hint_file, "spec": spec_file}[names]
    return call(config, builder), target


def _hint_missing(ctx):
    config, builder, hint_file, _ = with_hints(ctx)
    os.remove(hint_file)
    return train_with_hints(config, builder), f"{hint_file}: hint shard is missing"


def _hint_spec_missing(ctx):
    config, builder, _, spec_file = with_hints(ctx)
    os.remove(spec_file)
    return train_with_hints(config, builder), f"{spec_file}: no hint spec"


def _hint_spec_other_count(ctx):
    config, builder, _, spec_file = with_hints(ctx, spec_edit=_set(num_examples=40))
    config.teachers = ("fake",)
    return (
        lambda: teacher_hints.ensure_hints(builder, config, "train"),
        f"{spec_file} covers 40 examples, the split has 48",
    )


def _set(**fields):
    return lambda spec: json.dumps({**spec, **fields})


def _hint_cut(ctx):
    config, builder, hint_file, _ = with_hints(ctx)
    cut(hint_file, keep=os.path.getsize(hint_file) - 7)
    return train_with_hints(config, builder), f"{hint_file}: truncated or corrupt"


def _hint_missing_name(ctx):
    config, builder, _, _ = with_hints(ctx, spec_edit=_set(shapes={"visual_hint": [5, 5]}))
    return train_with_hints(config, builder), "config.teachers=('fake',) provides ['audio_hint']"


HINT_CASES = [
    Case(
        "hints-shard-missing",
        "hints",
        "one hint shard deleted",
        hint_shards.HintError,
        _hint_missing,
        "`<hint shard>: hint shard is missing`: re-run teachers.extract (finished shards are kept).",
    ),
    Case(
        "hints-record-short",
        "hints",
        "a hint shard one record short",
        hint_shards.HintError,
        lambda ctx: _hints(ctx, mutate=lambda r: r[:-1]),
        "`<hint shard>: 47 records, its data shard has 48`: re-extract.",
    ),
    Case(
        "hints-cut",
        "hints",
        "a hint shard cut inside its last record",
        hint_shards.HintError,
        _hint_cut,
        "`<hint shard>: truncated or corrupt TFRecord file`: re-extract.",
    ),
    Case(
        "hints-misaligned",
        "hints",
        "a hint shard whose records are in another order than its data shard's",
        tf.errors.InvalidArgumentError,
        lambda ctx: _hints(ctx, mutate=lambda r: [r[1], r[0]] + r[2:]),
        "`Hint shard <file> is not aligned with data shard <file>`: re-extract.",
    ),
    Case(
        "hints-wrong-shape",
        "hints",
        "hint tensors of another shape than the spec's (6×6 maps, spec 5×5)",
        tf.errors.InvalidArgumentError,
        misshapen_hints,
        "`<hint shard>: visual_hint does not hold the (5, 5) float16 values its spec says`.",
    ),
    Case(
        "hints-wrong-dtype",
        "hints",
        "hint tensors stored as float32, not float16",
        tf.errors.InvalidArgumentError,
        hints_as_float32,
        "`<hint shard>: audio_hint does not hold the (16,) float16 values ...`: re-extract.",
    ),
    Case(
        "hints-nan",
        "hints",
        "an audio hint of NaN (checked by `teachers.extract --verify`)",
        hint_shards.HintError,
        nan_hint,
        "`<hint shard>: record 3 (id ...): audio_hint has NaN or inf`.",
    ),
    Case(
        "hints-spec-missing",
        "hints",
        "the split's spec file deleted",
        hint_shards.HintError,
        _hint_spec_missing,
        "`<spec>: no hint spec (hints not extracted for this split?)`.",
    ),
    Case(
        "hints-spec-not-json",
        "hints",
        "the spec file is not JSON",
        hint_shards.HintError,
        lambda ctx: _hints(ctx, spec_edit="{not json", names="spec"),
        "`<spec>: not a valid hint spec (...)`.",
    ),
    Case(
        "hints-spec-version",
        "hints",
        "a spec of another format version",
        hint_shards.HintError,
        lambda ctx: _hints(ctx, spec_edit=_set(version=99), names="spec"),
        "`<spec>: hint spec version is not 1`: re-extract with this code.",
    ),
    Case(
        "hints-spec-unknown-name",
        "hints",
        "a spec naming an unknown hint tensor",
        hint_shards.HintError,
        lambda ctx: _hints(ctx, spec_edit=_set(shapes={"text_hint": [3]}), names="spec"),
        "`<spec>: not a valid hint spec (teacher 'fake': unknown hint names ...)`.",
    ),
    Case(
        "hints-spec-other-count",
        "hints",
        "a spec covering 40 examples of a 48-example split (stale hints)",
        FileNotFoundError,
        _hint_spec_other_count,
        "The exact teachers.extract command to run, with why: `<spec> covers 40 examples ...`.",
    ),
    Case(
        "hints-lack-needed-tensor",
        "hints",
        "`alpha_audio` > 0 but no teacher's hints hold `audio_hint`",
        ValueError,
        _hint_missing_name,
        "Add a teacher that provides it to config.teachers, or set alpha_audio=0.",
    ),
]


def _pth_truncated(ctx):
    path = ctx.path("weights.pth")
    torch.save(torch_resnet.resnet18(3, 10, 0.125).state_dict(), path)
    cut(path)
    return (lambda: common.load_checkpoint(path)), path


def _pth_string_tensor(ctx):
    path = ctx.path("weights.pth")
    sd = torch_resnet.resnet18(3, 10, 0.125).state_dict()
    sd["conv1.weight"] = "hello"
    torch.save(sd, path)
    return (lambda: convert_resnet.convert(path, ctx.path("o.npz"))), "'conv1.weight' is a str"


def _pth_missing_key(ctx):
    path = ctx.path("weights.pth")
    sd = torch_resnet.resnet18(3, 10, 0.125).state_dict()
    del sd["layer3.1.bn2.running_var"]
    torch.save(sd, path)
    return (
        lambda: convert_resnet.convert(path, ctx.path("o.npz")),
        f"{path}: missing key 'layer3.1.bn2.running_var'",
    )


def _npz_bytes(ctx, data):
    path = ctx.path("resnet18.npz")
    with open(path, "wb") as f:
        f.write(data)
    return load_npz(path), path


def _npz_object(ctx):
    path = ctx.path("resnet18.npz")
    with open(path, "wb") as f:
        np.savez(f, **{"params/conv1/kernel": np.array([{"a": 1}], dtype=object)})
    return load_npz(path), f"{path}: not a readable .npz file (Object arrays cannot be loaded"


def _npz_nan(ctx):
    def poison(arrays):
        arrays["batch_stats/bn1/var"][3] = np.nan

    path = resnet_npz(ctx, poison)
    return load_npz(path), f"{path}: 'batch_stats/bn1/var' holds NaN"


def _npz_shape(ctx):
    path = resnet_npz(ctx)
    return (
        lambda: pretrained.load_resnet18_npz(path, width=0.25),
        f"{path}: 'batch_stats/bn1/mean' has shape (8,)",
    )


def _npz_missing_key(ctx):
    path = resnet_npz(ctx, lambda a: a.pop("params/layer4_1/conv2/kernel"))
    return load_npz(path), f"{path}: missing key 'params/layer4_1/conv2/kernel'"


def _avc_other_width(ctx):
    config = tiny_config(ctx.tmp)
    npz = write_avc_npz(random_avc(0.25, config.model.embed_dim), ctx.path("avc.npz"))
    model = models.create_model(config)
    return (lambda: pretrained.load_avc_npz(npz, model, config)), "model.width=0.125"


def _orbax_damaged(ctx, damage):
    workdir, step_dir = copied_run(ctx)
    damage(step_dir)
    return restore(workdir), f"{os.path.dirname(step_dir)}: no checkpoint restores (step 1: "


def _biggest_data_file(step_dir):
    found = []
    for root, _, files in os.walk(os.path.join(step_dir, "default")):
        found += [os.path.join(root, f) for f in files if os.sep + "d" + os.sep in root + os.sep]
    return max(found, key=os.path.getsize)


def _import_into_used(ctx):
    workdir, _ = copied_run(ctx)
    config = tiny_config(ctx.tmp)
    return (
        lambda: train_state.import_npz(config, workdir, ctx.path("avc.npz")),
        f"{workdir}/checkpoints already holds a checkpoint (step 1)",
    )


CHECKPOINT_CASES = [
    Case(
        "pth-missing",
        "checkpoint",
        "the .pth does not exist",
        common.CheckpointError,
        lambda ctx: ((lambda: common.load_checkpoint(ctx.path("none.pth"))), "none.pth"),
        "`<path>: weights file does not exist`.",
    ),
    Case(
        "pth-runs-code",
        "checkpoint",
        "a .pth whose pickle would run code",
        common.CheckpointError,
        evil_pth,
        "`<path>: refused: the file holds more than tensors`: nothing runs (weights_only=True); "
        "re-save a plain state_dict.",
    ),
    Case(
        "pth-empty",
        "checkpoint",
        "0 bytes",
        common.CheckpointError,
        lambda ctx: pth_bytes(ctx, b""),
        "`<path>: not a readable PyTorch checkpoint (EOFError ...)`.",
    ),
    Case(
        "pth-not-a-checkpoint",
        "checkpoint",
        "text saved as .pth",
        common.CheckpointError,
        lambda ctx: pth_bytes(ctx, b"hello"),
        "`<path>: not a readable PyTorch checkpoint (KeyError ...)`.",
    ),
    Case(
        "pth-truncated",
        "checkpoint",
        "a .pth cut in half",
        common.CheckpointError,
        _pth_truncated,
        "`<path>: not a readable PyTorch checkpoint (... central directory ...)`: download again.",
    ),
    Case(
        "pth-non-tensor-value",
        "checkpoint",
        "a state_dict entry that is a string, not a tensor (wrong dtype)",
        convert_resnet.ConversionError,
        _pth_string_tensor,
        "`'<key>' is a str, not a tensor of numbers`.",
    ),
    Case(
        "pth-missing-key",
        "checkpoint",
        "a ResNet18 state_dict without one tensor",
        convert_resnet.ConversionError,
        _pth_missing_key,
        "`<path>: missing key '<key>'`: not torchvision's ResNet18.",
    ),
    Case(
        "npz-missing",
        "checkpoint",
        "`init_visual_npz` names no file",
        FileNotFoundError,
        lambda ctx: (load_npz(ctx.path("nothing.npz")), "nothing.npz"),
        "FileNotFoundError with the convert_resnet command.",
    ),
    Case(
        "npz-not-a-zip",
        "checkpoint",
        "a .npz that is not a zip (truncated download)",
        pretrained.PretrainedError,
        lambda ctx: _npz_bytes(ctx, b"PK\x03\x04 not really"),
        "`<path>: not a readable .npz file (...)`.",
    ),
    Case(
        "npz-pickled-object",
        "checkpoint",
        "a .npz holding a pickled object array (its pickle could run code)",
        pretrained.PretrainedError,
        _npz_object,
        "Refused (`allow_pickle=False`): `<path>: not a readable .npz file`.",
    ),
    Case(
        "npz-nan",
        "checkpoint",
        "a .npz with a NaN weight",
        pretrained.PretrainedError,
        _npz_nan,
        "`<path>: '<key>' holds NaN or infinite values`: convert again from a good .pth.",
    ),
    Case(
        "npz-wrong-shape",
        "checkpoint",
        "a ResNet18 .npz of another width than the student's",
        pretrained.PretrainedError,
        _npz_shape,
        "`<path>: '<key>' has shape ..., a ResNet18 trunk (... width w) wants ...`.",
    ),
    Case(
        "npz-missing-key",
        "checkpoint",
        "a ResNet18 .npz without one array",
        pretrained.PretrainedError,
        _npz_missing_key,
        "`<path>: missing key '<key>'`.",
    ),
    Case(
        "avc-npz-other-config",
        "checkpoint",
        "the authors' converted AVC for another `model.width`",
        pretrained.PretrainedError,
        _avc_other_width,
        "`<path>: '<key>' has shape ..., the AVC of this config (model.width=...)`: set "
        "model.width / model.embed_dim as convert_avc printed.",
    ),
    Case(
        "orbax-truncated-array",
        "checkpoint",
        "a checkpoint's array data file cut short",
        checkpoints.CheckpointRestoreError,
        lambda ctx: _orbax_damaged(ctx, lambda d: cut(_biggest_data_file(d))),
        "`<workdir>/checkpoints: no checkpoint restores (step <n>: ...)`: use a fresh --workdir "
        "(a damaged newest step alone is skipped, with a warning, for the newest that restores).",
    ),
    Case(
        "orbax-missing-metadata",
        "checkpoint",
        "a checkpoint's _METADATA deleted",
        checkpoints.CheckpointRestoreError,
        lambda ctx: _orbax_damaged(
            ctx, lambda d: os.remove(os.path.join(d, "default", "_METADATA"))
        ),
        "As above.",
    ),
    Case(
        "import-into-used-workdir",
        "checkpoint",
        "`--mode=import` into a workdir that holds a checkpoint",
        FileExistsError,
        _import_into_used,
        "Import into a fresh --workdir.",
    ),
]


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

CASES = (
    CONFIG_CASES
    + IMAGE_CASES
    + AUDIO_CASES
    + VIDEO_CASES
    + ANNOTATION_CASES
    + BUILD_CASES
    + TFRECORD_CASES
    + HINT_CASES
    + CHECKPOINT_CASES
    + LOCALIZE_CASES
)
_TRIED: list[str] = []


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def report_count(request):
    """Prints how many cases ran, past pytest's capture so that `pytest -q` shows it."""
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nbad-input suite: {len(_TRIED)} cases ({len(CASES)} in the table)")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A tiny workdir with config.json and an orbax checkpoint of its train state at step 1."""
    workdir = tmp_path_factory.mktemp("saved") / "run"
    config = tiny_config(workdir.parent / "data")
    os.makedirs(workdir)
    checkpoints.save_config(config, str(workdir))
    manager = checkpoints.checkpoint_manager(str(workdir), config)
    # Random values of the train state's shapes: no compilation, and files worth damaging.
    abstract = jax.eval_shape(
        functools.partial(train_state.init_state, models.create_model(config), config),
        jax.random.key(0),
    )
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract)
    manager.save(1, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    return workdir


@pytest.fixture
def ctx(tmp_path, tiny_data_dir, saved_run):
    return Ctx(tmp_path, tiny_data_dir, saved_run)


# ------------------------------------------------------------------------------- tests


def test_the_table_is_large_and_its_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert all(c.expected is SKIP or issubclass(c.expected, BaseException) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, ctx):
    call, names = case.make(ctx)
    if case.expected == SKIP:
        report = call()
        assert names in report, f"{names!r} not in the report:\n{report}"
    else:
        with pytest.raises(Exception) as info:
            call()
        assert type(info.value) is case.expected, f"{type(info.value)}: {info.value}"
        assert names in str(info.value), f"{names!r} not in: {info.value}"
    _TRIED.append(case.id)
