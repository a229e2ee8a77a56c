"""Configs: the paper's hyper-parameters, and a clear error where real data is missing."""

import pytest
from helpers.configs import load_config

from avkd_jax import datasets


@pytest.mark.parametrize("name", ["flickr10k", "flickr144k", "vggs10k", "vggs144k"])
def test_paper_configs(name):
    c = load_config(name)
    assert (c.batch_size, c.num_epochs, c.learning_rate, c.tau) == (128, 100, 1e-4, 0.03)
    assert (c.alpha_contrastive, c.alpha_audio, c.alpha_visual) == (1, 1000, 100_000)
    assert (c.image_size, c.resize_size, c.sample_rate, c.audio_seconds) == (224, 246, 22050, 3)
    assert (c.model.width, c.model.embed_dim) == (1.0, 2048)
    assert c.eval_format == ("flickr" if name.startswith("flickr") else "vggss")
    # The EZ-VSL list files, looked up in <manual_dir>/metadata unless given as paths.
    prefix = "flickr" if name.startswith("flickr") else "vggss"
    size = "10k" if "10k" in name else "144k"
    assert c.dataset_kwargs.train_list == f"{prefix}_{size}.txt"
    assert c.dataset_kwargs.test_list == f"{prefix}_test.csv"
    assert (c.eval_sets, c.allow_test_overlap) == ((), False)
    with pytest.raises(ValueError, match=r"config\.data_dir and config\.manual_dir"):
        datasets.get_builder(c)


@pytest.mark.parametrize("name", ["flickr10k", "vggs144k"])
def test_paper_config_without_lists_names_the_field(name, tmp_path):
    c = load_config(name)
    c.data_dir, c.manual_dir = str(tmp_path / "tfds"), str(tmp_path / "raw")
    with pytest.raises(
        FileNotFoundError, match=r"config\.dataset_kwargs\.train_list=.*raw/metadata"
    ):
        datasets.get_builder(c)


def test_synthetic_config_is_the_default_world():
    c = load_config("synthetic")
    # Evaluated on its own test set ('synthetic_test'), as before eval_sets existed.
    assert c.dataset == "synthetic_av" and c.eval_sets == ()
    assert c.batch_size % 2 == 0 and c.resize_size > c.image_size


def test_config_xla_flags_add_to_the_environment_without_overriding_it():
    from avkd_jax import runtime

    ynn = "--xla_cpu_experimental_ynn_fusion_type=dot,reduce"
    assert load_config("flickr10k").xla_flags == ynn
    assert runtime.with_xla_flags("", ynn) == ynn
    count = "--xla_force_host_platform_device_count=4"
    assert runtime.with_xla_flags(count, ynn) == f"{count} {ynn}"
    wide = f"{ynn} --xla_cpu_prefer_vector_width=512"
    off = "--xla_cpu_experimental_ynn_fusion_type="
    assert runtime.with_xla_flags(off, wide) == f"{off} --xla_cpu_prefer_vector_width=512"
    assert runtime.with_xla_flags(off, ynn) == off  # The user's own setting wins.
    environ = {"XLA_FLAGS": count}
    runtime.add_xla_flags(ynn, environ)
    assert environ == {"XLA_FLAGS": f"{count} {ynn}"}
