"""Shared fixtures: a tiny synthetic world, built once per session."""

import importlib.util
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str):
    """`configs/<name>.py`'s get_config()."""
    spec = importlib.util.spec_from_file_location(f"config_{name}", REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def tiny_config(data_dir):
    """The synthetic config shrunk to seconds: 64² images (a 2×2 map), 0.5 s audio,
    1/8-width nets."""
    c = load_config("synthetic")
    c.data_dir = str(data_dir)
    c.dataset_kwargs.num_train = 48
    c.dataset_kwargs.num_test = 12
    c.dataset_kwargs.world_seed = 3
    c.image_size = 64
    c.resize_size = 70
    c.audio_seconds = 0.5
    c.model.width = 0.125
    c.model.embed_dim = 16
    c.batch_size = 8
    c.num_epochs = 2
    c.shuffle_buffer = 64
    c.log_every_steps = 2
    c.checkpoint_every_steps = 3
    c.eval_every_epochs = 100
    c.eval_batch_size = 5
    return c


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """A prepared tiny synthetic_av dataset (raw world + TFRecords)."""
    from avkd_jax import datasets

    data_dir = tmp_path_factory.mktemp("data")
    datasets.get_builder(tiny_config(data_dir)).download_and_prepare()
    return data_dir


@pytest.fixture
def tiny(tiny_data_dir):
    return tiny_config(tiny_data_dir)
