"""python -m teachers.extract on a tiny 3-shard synthetic_av dataset: alignment, checks,
resuming after a crash, stale temporary files."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from helpers.configs import tiny_config

from avkd_jax import datasets
from avkd_jax.datasets import hint_shards
from teachers import data, extract, synthetic

REPO = str(pathlib.Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """The tiny world of conftest.tiny_data_dir, smaller, written as 3 train shards (conftest's single
    shard could not show a run stopped between shards)."""
    c = tiny_config(tmp_path_factory.mktemp("data"))
    c.dataset_kwargs.num_train = 20
    c.dataset_kwargs.num_test = 4
    builder = datasets.get_builder(c)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=3))
    dataset = f"synthetic_av/{builder.builder_config.name}"
    return str(c.data_dir), dataset


def cli(data_dir, dataset, hints_dir, *flags):
    return extract.main(
        [
            f"--data_dir={data_dir}",
            f"--dataset={dataset}",
            "--split=train",
            "--teacher=synthetic",
            "--random_weights",
            f"--hints_dir={hints_dir}",
            "--no_progress",
            *flags,
        ]
    )


def split_files(data_dir, dataset):
    builder = data.open_dataset(data_dir, dataset)
    return builder, data.split_shards(builder, "train")


def hint_files(shards, hints_dir):
    return [hint_shards.hint_path(s, "synthetic", str(hints_dir)) for s in shards]


def read_bytes(paths):
    out = {}
    for p in paths:
        with open(p, "rb") as f:
            out[os.path.basename(p)] = f.read()
    return out


def test_extract_writes_aligned_verified_hints(sharded, tmp_path, capsys):
    data_dir, dataset = sharded
    assert cli(data_dir, dataset, tmp_path, "--verify") == 0
    line = capsys.readouterr().out
    assert "3 shards (3 written, 0 kept), 20 examples" in line and "verified 20 records" in line
    builder, shards = split_files(data_dir, dataset)
    spec = hint_shards.read_spec(hint_shards.spec_path(shards[0], "synthetic", str(tmp_path)))
    assert spec.num_examples == 20 and spec.source == "random"
    assert spec.shapes == {"audio_hint": (2048,), "visual_hint": (25, 25)}

    # Record for record: each hint is the teacher's output on that very data record, read
    # here independently of the extractor (tf.data + the dataset's own decoder).
    teacher = synthetic.make_teacher(random_weights=True)
    for shard, hint_file in zip(shards, hint_files(shards, tmp_path)):
        records = [
            builder.info.features.deserialize_example(r) for r in tf.data.TFRecordDataset(shard)
        ]
        batch = {
            "image": [r["image"].numpy() for r in records],
            "audio": np.stack([r["audio"].numpy() for r in records]),
            "sample_rate": 22050,
        }
        expected = teacher.compute(batch)
        hints = [
            hint_shards.decode_example(r, spec)
            for r in tf.data.TFRecordDataset(hint_file).as_numpy_iterator()
        ]
        assert [h[0] for h in hints] == [r["id"].numpy().decode() for r in records]
        for name in spec.shapes:
            got = np.stack([h[1][name] for h in hints])
            assert got.dtype == np.float16
            np.testing.assert_array_equal(got, expected[name].astype(np.float16))

    # A second run keeps everything and computes nothing.
    assert cli(data_dir, dataset, tmp_path) == 0
    assert "(0 written, 3 kept)" in capsys.readouterr().out


def test_misaligned_truncated_and_missing_shards_are_named(sharded, tmp_path, capsys):
    data_dir, dataset = sharded
    assert cli(data_dir, dataset, tmp_path) == 0
    builder, shards = split_files(data_dir, dataset)
    files = hint_files(shards, tmp_path)
    pristine = read_bytes(files)

    def restore():
        for f in files:
            with open(f, "wb") as out:
                out.write(pristine[os.path.basename(f)])

    # Two records swapped.
    records = list(tf.data.TFRecordDataset(files[0]).as_numpy_iterator())
    records[0], records[1] = records[1], records[0]
    with tf.io.TFRecordWriter(files[0]) as w:
        for r in records:
            w.write(r)
    with pytest.raises(hint_shards.HintError, match=r"00000-of-00003\.hints-synthetic: record 0"):
        extract.verify_split(builder, "train", "synthetic", str(tmp_path))
    restore()

    # A hint shard of another data shard (same length, other ids).
    shutil.copy(files[2], files[0])
    with pytest.raises(hint_shards.HintError, match="does not belong to this data shard"):
        extract.verify_split(builder, "train", "synthetic", str(tmp_path))
    restore()

    # Bytes cut off the end, and a whole record missing.
    with open(files[1], "r+b") as f:
        f.truncate(len(pristine[os.path.basename(files[1])]) - 100)
    with pytest.raises(hint_shards.HintError, match=r"00001-of-00003\.hints-synthetic: trunc"):
        extract.verify_split(builder, "train", "synthetic", str(tmp_path))
    restore()
    records = list(tf.data.TFRecordDataset(files[1]).as_numpy_iterator())
    with tf.io.TFRecordWriter(files[1]) as w:
        for r in records[:-1]:
            w.write(r)
    with pytest.raises(hint_shards.HintError, match=r"00001-of-00003\.hints-synthetic: 5 rec"):
        extract.verify_split(builder, "train", "synthetic", str(tmp_path))
    restore()

    os.remove(files[2])
    with pytest.raises(hint_shards.HintError, match=r"00002-of-00003\.hints-synthetic: hint sh"):
        extract.verify_split(builder, "train", "synthetic", str(tmp_path))
    # The CLI says the same and fails (--verify on a split whose shards "exist" or not).
    shutil.copy(files[0], files[2])
    assert cli(data_dir, dataset, tmp_path, "--verify") == 1
    assert "00002-of-00003.hints-synthetic: record 0 has id" in capsys.readouterr().err


class Crash(RuntimeError):
    pass


def test_interrupted_run_resumes_to_identical_files(sharded, tmp_path):
    data_dir, dataset = sharded
    builder, shards = split_files(data_dir, dataset)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert cli(data_dir, dataset, whole, "--batch_size=4") == 0

    def run(hints_dir, teacher_fn):
        return extract.extract_split(
            builder,
            "train",
            "synthetic",
            teacher_fn,
            source="random",
            hints_dir=str(hints_dir),
            batch_size=4,
            progress=False,
        )

    def crashing():  # Shard 0 has 7 records = 2 batches of 4: the 3rd batch is shard 1's.
        teacher = synthetic.make_teacher(random_weights=True)
        compute, calls = teacher.compute, []

        def compute_or_crash(batch):
            calls.append(1)
            if len(calls) == 3:
                raise Crash("killed on the second shard")
            return compute(batch)

        teacher.compute = compute_or_crash
        return teacher

    with pytest.raises(Crash):
        run(resumed, crashing)
    done = sorted(os.listdir(resumed))
    assert done == sorted(
        [
            os.path.basename(hint_files(shards, resumed)[0]),
            "synthetic_av-train.hints-synthetic.json.partial",
        ]
    )  # Shard 0 only, no temporary file, no spec yet.
    run(resumed, lambda: synthetic.make_teacher(random_weights=True))
    paths = lambda d: sorted(os.path.join(d, f) for f in os.listdir(d))
    assert [os.path.basename(p) for p in paths(resumed)] == [
        os.path.basename(p) for p in paths(whole)
    ]
    assert read_bytes(paths(resumed)) == read_bytes(paths(whole))


def test_stale_temp_files_are_removed(sharded, tmp_path):
    data_dir, dataset = sharded
    _, shards = split_files(data_dir, dataset)
    first = hint_files(shards, tmp_path)[0]
    proc = subprocess.Popen(["true"])
    proc.wait()  # A pid that is no longer running: a killed extraction's leftover.
    # The parent's pid is alive: the temporary file of a concurrent writer, left alone.
    stale, live = f"{first}.tmp.{proc.pid}", f"{first}.tmp.{os.getppid()}"
    for p in (stale, live):
        with open(p, "wb") as f:
            f.write(b"half a shard")
    assert cli(data_dir, dataset, tmp_path, "--verify") == 0
    assert not os.path.exists(stale) and os.path.exists(live)
    assert extract.remove_stale_temps([first]) == []


def test_other_weights_are_not_mixed_in(sharded, tmp_path, capsys):
    data_dir, dataset = sharded
    _, shards = split_files(data_dir, dataset)
    assert cli(data_dir, dataset, tmp_path) == 0
    other = tmp_path / "teachers.pt"
    synthetic.save(
        synthetic.train(
            progress=False,
            visual_images=8,
            visual_steps=1,
            audio_clips=8,
            audio_steps=1,
            heldout_images=2,
            heldout_clips=2,
            heldout_scenes=1,
            batch_size=4,
        ),
        str(other),
    )
    flags = [
        f"--data_dir={data_dir}",
        f"--dataset={dataset}",
        "--teacher=synthetic",
        f"--weights={other}",
        f"--hints_dir={tmp_path}",
        "--no_progress",
    ]
    assert extract.main(flags) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert extract.main([*flags, "--overwrite", "--verify"]) == 0
    spec = hint_shards.read_spec(hint_shards.spec_path(shards[0], "synthetic", str(tmp_path)))
    assert spec.source == str(other)


def test_nan_from_a_teacher_is_refused(sharded, tmp_path):
    data_dir, dataset = sharded
    builder, _ = split_files(data_dir, dataset)

    def broken():
        teacher = synthetic.make_teacher(random_weights=True)
        compute = teacher.compute

        def with_nan(batch):
            out = compute(batch)
            out["visual_hint"][0] = 1 / 625
            out["visual_hint"][0, 3, 4] = np.nan  # NaN in part of a map: not "nothing found"
            return out

        teacher.compute = with_nan
        return teacher

    with pytest.raises(hint_shards.HintError, match=r"id \d+: the synthetic teacher gave visual"):
        extract.extract_split(
            builder, "train", "synthetic", broken, source="random", hints_dir=str(tmp_path)
        )
    assert [f for f in os.listdir(tmp_path) if ".tmp." in f] == []


def test_dataset_names_resolve(sharded):
    data_dir, dataset = sharded
    name, config = dataset.split("/")
    expected = os.path.join(data_dir, name, config, "1.0.0")
    assert data.dataset_dir(data_dir, name) == expected  # the only config, newest version
    assert data.dataset_dir(data_dir, dataset) == expected
    assert data.dataset_dir(data_dir, f"{dataset}:1.0.0") == expected
    with pytest.raises(data.DatasetError, match="no prepared version 9.9.9"):
        data.dataset_dir(data_dir, f"{dataset}:9.9.9")
    with pytest.raises(data.DatasetError, match="no prepared config 'nope'"):
        data.dataset_dir(data_dir, f"{name}/nope")
    with pytest.raises(data.DatasetError, match="no prepared dataset 'vggsound'"):
        data.dataset_dir(data_dir, "vggsound")
    builder = data.open_dataset(data_dir, dataset)
    with pytest.raises(data.DatasetError, match="no split 'validation'"):
        data.split_shards(builder, "validation")
    assert data.sample_rate(builder) == 22050
    with pytest.raises(ValueError, match="--weights=PATH"):
        extract.make_teacher("synthetic")


def test_teachers_work_without_jax(sharded, tmp_path):
    """teachers/ never imports jax (TensorFlow tries to, and copes when it is absent)."""
    data_dir, dataset = sharded
    code = f"""
import sys

class NoJax:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib", "flax", "optax"):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")

sys.meta_path.insert(0, NoJax())
from teachers import convert_resnet, detr, extract, panns, synthetic, torch_resnet
assert extract.main([
    "--data_dir={data_dir}", "--dataset={dataset}", "--teacher=synthetic", "--random_weights",
    "--hints_dir={tmp_path}", "--no_progress", "--verify",
]) == 0
assert not [m for m in sys.modules if m.startswith(("jax", "flax", "avkd_jax.models"))]
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "verified 20 records" in out.stdout
