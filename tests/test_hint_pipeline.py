"""Hint shards on the JAX side: zipped with their data shards, checked, and in the loss.

The hint shards here are written by the tests (tests/helpers/hints.py, with `hint_shards`,
the format the teacher tool writes), holding a function of each record's own audio, so
that a batch shows whether every example met its own hints.
"""

import os

import jax
import numpy as np
import pytest
import tensorflow as tf
from helpers.hints import GRID, D, fake_hints, hinted, write_fake_hints

from avkd_jax import datasets, input_pipeline, models, teacher_hints, train
from avkd_jax.datasets import hint_shards


def test_batches_carry_each_examples_own_hints(tiny, tmp_path):
    config = hinted(tiny, tmp_path)
    builder = datasets.get_builder(config)
    write_fake_hints(builder, "train", str(tmp_path))
    sources = teacher_hints.hint_sources(builder, config, "train")
    teacher_hints.check_counts(builder, "train", sources)
    batches = list(input_pipeline.train_dataset(builder, config, 0, 8, sources).as_numpy_iterator())
    assert len(batches) == 6
    plain = list(input_pipeline.train_dataset(builder, config, 0, 8).as_numpy_iterator())
    nan_rows = 0
    for b, p in zip(batches, plain):
        # Hints change nothing else: the same shuffle, crops and flips as without them.
        np.testing.assert_array_equal(b["image"], p["image"])
        np.testing.assert_array_equal(b["audio"], p["audio"])
        assert b["audio_hint"].dtype == np.float16 and b["audio_hint"].shape == (8, D)
        assert b["visual_hint"].shape == (8, *GRID)
        for row in range(8):
            want = fake_hints(b["audio"][row])
            np.testing.assert_array_equal(
                b["audio_hint"][row], want["audio_hint"].astype(np.float16)
            )
            np.testing.assert_array_equal(
                b["visual_hint"][row], want["visual_hint"].astype(np.float16)
            )
            nan_rows += np.isnan(want["visual_hint"]).all()
    assert 0 < nan_rows < 48


def test_only_the_hints_with_a_weight_are_read(tiny, tmp_path):
    config = hinted(tiny, tmp_path)
    config.alpha_visual = 0.0
    builder = datasets.get_builder(config)
    write_fake_hints(builder, "train", str(tmp_path))
    (source,) = teacher_hints.hint_sources(builder, config, "train")
    assert source.names == ("audio_hint",)
    batch = next(input_pipeline.train_dataset(builder, config, 0, 8, [source]).as_numpy_iterator())
    assert "visual_hint" not in batch and batch["audio_hint"].shape == (8, D)


def test_misaligned_hint_shard_stops_with_the_shard_named(tiny, tmp_path):
    config = hinted(tiny, tmp_path)
    builder = datasets.get_builder(config)
    swap = lambda r: [r[1], r[0]] + r[2:]  # noqa: E731
    (data_file,) = write_fake_hints(builder, "train", str(tmp_path), mutate=swap)
    sources = teacher_hints.hint_sources(builder, config, "train")
    teacher_hints.check_counts(builder, "train", sources)  # Counts agree; ids do not.
    ds = input_pipeline.train_dataset(builder, config, 0, 8, sources)
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        list(ds.as_numpy_iterator())
    assert "is not aligned with data shard" in str(e.value)
    assert os.path.basename(data_file) in str(e.value)


def test_truncated_or_missing_hint_shards_are_named(tiny, tmp_path):
    config = hinted(tiny, tmp_path)
    builder = datasets.get_builder(config)
    (data_file,) = write_fake_hints(builder, "train", str(tmp_path), mutate=lambda r: r[:-1])
    sources = teacher_hints.hint_sources(builder, config, "train")
    hint_file = sources[0].file_for(data_file)
    with pytest.raises(hint_shards.HintError, match=r"47 records, its data shard has 48"):
        teacher_hints.check_counts(builder, "train", sources)
    # Cut inside the last record: the reader's CRC check names the file.
    write_fake_hints(builder, "train", str(tmp_path))
    size = os.path.getsize(hint_file)
    with open(hint_file, "r+b") as f:
        f.truncate(size - 7)
    with pytest.raises(hint_shards.HintError, match="truncated or corrupt"):
        teacher_hints.check_counts(builder, "train", sources)
    os.remove(hint_file)
    with pytest.raises(FileNotFoundError, match=r"(?s)fake: .*is missing.*teachers\.extract"):
        teacher_hints.ensure_hints(builder, config, "train")


def test_missing_real_teacher_hints_give_the_extract_command(tiny, tmp_path):
    config = hinted(tiny, tmp_path, teacher="panns")
    config.alpha_visual = 0.0
    builder = datasets.get_builder(config)
    with pytest.raises(FileNotFoundError) as e:
        teacher_hints.ensure_hints(builder, config, "train")
    msg = str(e.value)
    assert "-m teachers.extract" in msg and "--teacher=panns" in msg and "--split=train" in msg
    assert f"--dataset=synthetic_av/{builder.builder_config.name}:1.0.0" in msg
    assert f"--hints_dir={tmp_path}" in msg
    config.teachers = ()
    with pytest.raises(ValueError, match="config.teachers is empty"):
        teacher_hints.ensure_hints(builder, config, "train")
    config.alpha_audio = 0.0
    teacher_hints.ensure_hints(builder, config, "train")  # No weight, no hints needed.


def test_loss_terms_add_the_weighted_hint_losses(tiny, tmp_path):
    config = hinted(tiny, tmp_path)
    builder = datasets.get_builder(config)
    write_fake_hints(builder, "train", str(tmp_path))
    sources = teacher_hints.hint_sources(builder, config, "train")
    batch = next(input_pipeline.train_dataset(builder, config, 0, 8, sources).as_numpy_iterator())
    model = models.create_model(config)
    variables = models.init_variables(model, config, jax.random.key(0))
    args = (variables["params"], variables["batch_stats"], batch)
    total, (terms, _) = train.loss_terms(*args, model=model, config=config)
    assert set(terms) == {"loss", "loss_contrastive", "loss_audio_hint", "loss_visual_hint"}
    expected = (
        terms["loss_contrastive"]
        + 1000.0 * terms["loss_audio_hint"]
        + 100_000.0 * terms["loss_visual_hint"]
    )
    np.testing.assert_allclose(float(total), float(expected), rtol=1e-6)
    # The audio term, recomputed from the model's own outputs in numpy.
    (a, _), _ = model.apply(
        variables, batch["image"], batch["audio"], train=True, mutable=["batch_stats"]
    )
    ref = np.mean((np.asarray(a, np.float64) - batch["audio_hint"].astype(np.float64)) ** 2)
    np.testing.assert_allclose(float(terms["loss_audio_hint"]), ref, rtol=1e-5)
    # Without weights the hints are neither needed nor used.
    config.alpha_audio = config.alpha_visual = 0.0
    plain = {"image": batch["image"], "audio": batch["audio"]}
    total0, (terms0, _) = train.loss_terms(*args[:2], plain, model=model, config=config)
    assert set(terms0) == {"loss", "loss_contrastive"}
    np.testing.assert_allclose(float(total0), float(terms["loss_contrastive"]), rtol=1e-6)


@pytest.fixture(autouse=True)
def _no_stray_hints(tiny):
    """Hints go to tmp dirs: the shared tiny dataset must stay without hint files."""
    yield
    builder = datasets.get_builder(tiny)
    stray = [f for f in os.listdir(builder.data_dir) if ".hints-" in f]
    for f in stray:
        os.remove(os.path.join(builder.data_dir, f))
    assert not stray
