"""The bad-input suite's shared parts: the `Case` record, the check each case gets
(`check`), the maker context and the makers several stages use.

A `Case` names the input's kind, what is wrong, the exception type expected (exactly that
type, not a subclass) or `SKIP` for a clip the builders skip and report, and a maker. The
maker writes the bad input under the test's tmp_path and returns the call that reads it
and the text that must name the offending file or field in the message (or, for a skip,
in the `skipped-<split>.tsv` row). docs/troubleshooting.md lists the same cases (rendered
by `troubleshooting.py`). Readers are called directly, as the entry points call them: no
training.
"""

import dataclasses
import importlib
import json
import os
import shutil
import struct
import types
from collections.abc import Callable

import jax
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import torch
from absl import flags
from helpers.configs import tiny_config
from helpers.hints import hinted, write_fake_hints
from helpers.media import sine
from helpers.paths import REPO
from ml_collections import config_flags
from PIL import Image, ImageFile

from avkd_jax import (
    checkpoints,
    datasets,
    input_pipeline,
    models,
    pretrained,
    sharding,
    teacher_hints,
)
from avkd_jax import state as train_state
from avkd_jax.datasets import (
    av_builder,
    hint_shards,
    media,
    sources,
)
from teachers import common, convert_resnet, torch_resnet

# What helpers.hints' fake teacher writes.
FAKE_SPEC = hint_shards.HintSpec("fake", {"audio_hint": (16,), "visual_hint": (5, 5)})
SKIP = "skipped and reported"  # The builders' documented skip (`av_builder.write_split`).
SR = 22050
SYNTHETIC_CONFIG = f"--config={REPO}/configs/synthetic.py"
BOX = "<bbox><type>s</type>{}</bbox>"  # An annotation's box: format its coordinates in.


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
      advice: what the user sees and does (docs/troubleshooting.md's table).
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
            media.load_image(path)
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


# ------------------------------------------------------------------------------- check

# The stages' tables (`bad_inputs.<stage>_cases`), each run by `test_<stage>.py`.
STAGES = {
    "config": ("CONFIG_CASES",),
    "media": ("IMAGE_CASES", "AUDIO_CASES", "VIDEO_CASES"),
    "annotations": ("ANNOTATION_CASES",),
    "build": ("BUILD_CASES",),
    "tfrecords": ("TFRECORD_CASES",),
    "hints": ("HINT_CASES",),
    "checkpoints": ("CHECKPOINT_CASES",),
    "localize": ("LOCALIZE_CASES",),
}
# The ids of the cases run so far in this session (the suite's report).
TRIED: list[str] = []


def all_cases() -> list:
    """Every stage's cases, in the order of STAGES."""
    out = []
    for stage, tables in STAGES.items():
        module = importlib.import_module(f"bad_inputs.{stage}_cases")
        for table in tables:
            out += getattr(module, table)
    return out


def check(case: Case, ctx: Ctx) -> None:
    """Makes the bad input and reads it: the exact exception type (or the skip) and the
    offending file or field named in its message (or in the skip report)."""
    call, names = case.make(ctx)
    if case.expected == SKIP:
        report = call()
        assert names in report, f"{names!r} not in the report:\n{report}"
    else:
        with pytest.raises(Exception) as info:
            call()
        assert type(info.value) is case.expected, f"{type(info.value)}: {info.value}"
        assert names in str(info.value), f"{names!r} not in: {info.value}"
    TRIED.append(case.id)
