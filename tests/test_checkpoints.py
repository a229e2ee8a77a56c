"""Damaged checkpoints and --mode=prepare.

A newest checkpoint whose array files are cut short is skipped, with a warning naming it,
for the newest that restores: by evaluation and `localize` (read only), and by training,
which moves it to `checkpoints/damaged/<step>` and goes on from the older step. When none
restores, `python -m avkd_jax.main --mode=eval` stops with one clear line and no
tracebacks. --mode=prepare works on a set smaller than one batch and names the command
that extracts missing real hints.
"""

import functools
import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers.configs import tiny_config
from helpers.paths import REPO
from helpers.real_disks import flickr_config

from avkd_jax import checkpoints, localize, models, prepare, sharding, train
from avkd_jax import state as train_state
from avkd_jax.errors import CheckpointRestoreError

HERE = os.path.dirname(os.path.abspath(__file__))


def damage(step_dir):
    """Cuts every array data file of a checkpoint step to half its size."""
    cut = 0
    for root, _, names in os.walk(os.path.join(step_dir, "default")):
        if os.path.basename(root) == "d":
            for name in names:
                path = os.path.join(root, name)
                os.truncate(path, os.path.getsize(path) // 2)
                cut += 1
    assert cut


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory):
    """A tiny workdir with config.json and checkpoints at steps 1 and 2 (random values of
    the train state's shapes)."""
    workdir = tmp_path_factory.mktemp("two_steps") / "run"
    config = tiny_config(workdir.parent / "data")
    os.makedirs(workdir)
    checkpoints.save_config(config, str(workdir))
    abstract = jax.eval_shape(
        functools.partial(train_state.init_state, models.create_model(config), config),
        jax.random.key(0),
    )
    rng = np.random.default_rng(0)
    with checkpoints.open_manager(str(workdir), config) as manager:
        for step in (1, 2):
            state = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract)
            manager.save(step, args=ocp.args.StandardSave(state))
    return str(workdir)


def copy(two_steps, tmp_path, damaged=(2,)):
    workdir = str(tmp_path / "run")
    shutil.copytree(two_steps, workdir)
    for step in damaged:
        damage(os.path.join(workdir, "checkpoints", str(step)))
    return workdir


def test_conv_impl_is_not_part_of_the_model(tmp_path):
    """A workdir's config.json that differs only in model.conv_impl (or predates it) passes
    `check_config`; one that differs in a model field proper does not."""
    config = tiny_config(tmp_path)
    config.model.conv_impl = "xla"
    checkpoints.save_config(config, str(tmp_path))
    config.model.conv_impl = "auto"
    checkpoints.check_config(config, str(tmp_path))
    old = json.loads((tmp_path / "config.json").read_text())
    del old["model"]["conv_impl"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    checkpoints.check_config(config, str(tmp_path))
    config.model.width = 0.25
    with pytest.raises(ValueError, match="model="):
        checkpoints.check_config(config, str(tmp_path))


def test_localize_skips_the_damaged_newest_step(two_steps, tmp_path, caplog):
    workdir = copy(two_steps, tmp_path)
    with caplog.at_level(logging.WARNING):
        run = localize.load_run(workdir)
    assert run.step == 1
    assert f"{workdir}/checkpoints/2: cannot restore this checkpoint" in caplog.text
    assert "Using checkpoint step 1" in caplog.text and "skipped step(s) 2" in caplog.text
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "2")), "read only"


def test_resuming_moves_the_damaged_step_aside_and_saves_again(two_steps, tmp_path, caplog):
    workdir = copy(two_steps, tmp_path)
    config = checkpoints.load_config(workdir)
    model, mesh = models.create_model(config), sharding.create_mesh()
    with checkpoints.open_manager(workdir, config) as manager, caplog.at_level(logging.INFO):
        state = train_state.restore_or_init(
            model, config, mesh, manager, jax.random.key(0), resume=True
        )
        assert int(state["step"]) == 1 and manager.latest_step() == 1
        moved = os.path.join(workdir, "checkpoints", "damaged", "2")
        assert os.path.isdir(moved) and f"Moved the damaged checkpoint step 2 to {moved}" in (
            caplog.text
        )
        assert "Resuming from checkpoint step 1" in caplog.text
        assert manager.save(2, args=ocp.args.StandardSave(state))
    with checkpoints.open_manager(workdir, config) as manager:
        assert manager.all_steps() == [1, 2]
        restored = checkpoints.restore_newest(
            manager, train_state.abstract_state(model, config, mesh)
        )
        assert restored[0] == 2 and restored[2] == []


@pytest.mark.slow
def test_training_resumes_from_the_step_before_a_damaged_one(tiny, tmp_path, caplog):
    first = tiny.copy_and_resolve_references()
    first.num_epochs, first.eval_every_epochs = 1, 0  # 6 steps, checkpoints 3 and 6.
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(first, workdir)
    damage(os.path.join(workdir, "checkpoints", "6"))
    with caplog.at_level(logging.INFO):
        train.train_and_evaluate(first, workdir)
    assert f"{workdir}/checkpoints/6: cannot restore this checkpoint" in caplog.text
    assert "Resuming from checkpoint step 3" in caplog.text
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "damaged", "6"))
    config = checkpoints.load_config(workdir)
    with checkpoints.open_manager(workdir, config) as manager:
        assert manager.all_steps() == [3, 6]
        abstract = train_state.abstract_state(
            models.create_model(config), config, sharding.create_mesh()
        )
        assert checkpoints.restore_newest(manager, abstract)[:3:2] == (6, [])


def test_no_step_restores_is_one_clear_error(two_steps, tmp_path):
    workdir = copy(two_steps, tmp_path, damaged=(1, 2))
    with pytest.raises(CheckpointRestoreError, match="no checkpoint restores") as info:
        localize.load_run(workdir)
    assert f"{workdir}/checkpoints:" in str(info.value)
    assert "step 2: " in str(info.value) and "step 1: " in str(info.value)


def test_eval_of_damaged_checkpoints_exits_without_tracebacks(two_steps, tmp_path):
    workdir = copy(two_steps, tmp_path, damaged=(1, 2))
    config_file = tmp_path / "config.py"
    config_file.write_text(
        f"import sys\nsys.path.insert(0, {HERE!r})\nfrom helpers.configs import tiny_config\n\n\n"
        f"def get_config():\n    return tiny_config({str(tmp_path / 'data')!r})\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "avkd_jax.main",
            f"--config={config_file}",
            f"--workdir={workdir}",
            "--mode=eval",
        ],
        cwd=REPO,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    assert f"error: {workdir}/checkpoints: no checkpoint restores" in out.stderr
    assert "Traceback" not in out.stderr and "Event loop is closed" not in out.stderr


def test_prepare_a_set_smaller_than_a_batch(tmp_path):
    config = tiny_config(tmp_path / "data")
    config.dataset_kwargs.num_train, config.dataset_kwargs.num_test = 9, 3
    config.batch_size, config.num_epochs = 128, 0
    prepared = prepare.prepare(config)
    assert prepared.builder.info.splits["train"].num_examples == 9
    assert prepared.missing_hints == {}
    with pytest.raises(ValueError, match="9 training examples make no batch of 128"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def test_prepare_names_the_command_for_missing_real_hints(flickr_root, tmp_path):
    config_file = tmp_path / "config.py"
    config_file.write_text(
        f"import sys\nsys.path.insert(0, {HERE!r})\nfrom helpers.real_disks import "
        "flickr_config\n\n\n"
        f"def get_config():\n    return flickr_config({str(flickr_root)!r}, "
        f"{str(tmp_path / 'tfds')!r})\n"
    )
    config = flickr_config(flickr_root, tmp_path / "tfds")
    assert config.batch_size > 9 and config.teachers and config.alpha_audio
    out = subprocess.run(
        [sys.executable, "-m", "avkd_jax.main", f"--config={config_file}", "--mode=prepare"],
        cwd=REPO,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Teacher hints for the train split are not ready:" in out.stdout
    for teacher in config.teachers:
        assert f"-m teachers.extract --data_dir={tmp_path / 'tfds'}" in out.stdout
        assert f"--split=train --teacher={teacher} --weights=" in out.stdout
