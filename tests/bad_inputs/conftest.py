"""The bad-input suite's fixtures: the prepared inputs the makers damage (`cases.Ctx`)."""

import functools
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers.configs import tiny_config

from avkd_jax import checkpoints, models
from avkd_jax import state as train_state
from bad_inputs.cases import TRIED, Ctx, all_cases


@pytest.fixture(scope="session", autouse=True)
def report_count(request):
    """Prints how many cases ran (all stages together), past pytest's capture so that
    `pytest -q` shows it."""
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nbad-input suite: {len(TRIED)} cases ({len(all_cases())} in the table)")


@pytest.fixture(scope="session")
def saved_run(tmp_path_factory):
    """A tiny workdir with config.json and an orbax checkpoint of its train state at step 1
    (the makers copy it before they damage it)."""
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
