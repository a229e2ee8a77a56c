"""Fixtures shared by the test files: a tiny synthetic world built once per session, a
trained synthetic run, and the small raw Flickr-SoundNet / VGG-Sound disks. Helpers that
are not fixtures are in tests/helpers/."""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from helpers.configs import (  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL)
    TRAINED_RUN_STAND_IN,
    TRAINED_RUN_TEACHERS,
    tiny_config,
    trained_run_config,
)
from helpers.paths import REPO  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest_basetemp(tmp_path_factory):
    """tensorflow-datasets leaves an empty mkdtemp folder behind each time a builder is made
    for a dataset not yet prepared (`DatasetInfo.initialize_from_bucket`): 41 in a full
    run. Here they, and the test processes' children's, land where pytest prunes."""
    folder = str(tmp_path_factory.mktemp("tempfile"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", folder)
        patch.setenv("TMPDIR", folder)
        yield


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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A workdir with a student trained on a small synthetic world (`trained_run_config`),
    evaluated at the end (results, cious.json, pictures). Shared by the slow localize,
    pictures and notebook tests."""
    import resource
    import subprocess
    import sys
    import time

    from avkd_jax import datasets, synthetic_assets, train

    start = time.perf_counter()
    root = tmp_path_factory.mktemp("trained_run")
    config = trained_run_config(root / "data")
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    # The teachers' CLIs in child processes, as the trainer runs them (their data workers
    # must not fork this process, which holds TensorFlow's and JAX's threads), trained
    # shorter than on first use.
    stand_in = synthetic_assets.resnet18_path(builder, config)
    flags = [f"--{k}={v}" for k, v in TRAINED_RUN_STAND_IN.items()]
    flags += [f"--width={config.model.width:g}", f"--image_size={config.image_size}"]
    subprocess.run(
        [sys.executable, "-m", "teachers.synthetic_pretrain", f"--out={stand_in}", *flags],
        cwd=REPO,
        check=True,
    )
    teachers = synthetic_assets.teacher_weights_path(builder)
    flags = [f"--{k}={v}" for k, v in TRAINED_RUN_TEACHERS.items()]
    subprocess.run(
        [sys.executable, "-m", "teachers.synthetic", f"--out={teachers}", "--no_progress", *flags],
        cwd=REPO,
        check=True,
    )
    workdir = str(root / "run")
    train.train_and_evaluate(config, workdir)
    cpu = sum(
        getattr(resource.getrusage(who), field)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for field in ("ru_utime", "ru_stime")
    )
    print(
        f"trained_run: {time.perf_counter() - start:.0f} s wall ({cpu:.0f} s CPU in this session)"
    )
    return workdir


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    """A workdir holding a random-weight student of a small config (a 3 × 3 map), imported
    as the authors' checkpoint is: converted from PyTorch, then --mode=import's code."""
    from helpers.torch_reference import random_avc, write_avc_npz

    from avkd_jax import state

    root = tmp_path_factory.mktemp("random_run")
    config = tiny_config(root / "data")
    config.image_size = 96
    npz = write_avc_npz(random_avc(config.model.width, config.model.embed_dim), root / "avc.npz")
    state.import_npz(config, str(root / "run"), npz)
    return str(root / "run")


# The raw disks of tests/helpers/real_disks.py and their builds, once per test module
# (test_real_datasets, test_report, test_checkpoints), as before they were shared.


@pytest.fixture(scope="module")
def flickr_root(tmp_path_factory):
    from helpers.real_disks import write_flickr_disk

    return write_flickr_disk(tmp_path_factory.mktemp("flickr_raw"))


@pytest.fixture(scope="module")
def vggsound_root(tmp_path_factory):
    from helpers.real_disks import write_vggsound_disk

    return write_vggsound_disk(tmp_path_factory.mktemp("vggsound_raw"))


@pytest.fixture(scope="module")
def flickr_built(flickr_root, tmp_path_factory):
    from helpers.real_disks import flickr_config

    from avkd_jax import datasets

    config = flickr_config(flickr_root, tmp_path_factory.mktemp("tfds"))
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    return config, builder


@pytest.fixture(scope="module")
def vggsound_built(vggsound_root, tmp_path_factory):
    from helpers.real_disks import vggsound_config

    from avkd_jax import datasets

    config = vggsound_config(vggsound_root, tmp_path_factory.mktemp("tfds"))
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    return config, builder
