"""TFDS builders, and `get_builder(config)`: the one place a config becomes a dataset."""

import os


def get_builder(config):
    """The prepared-or-preparable TFDS builder for `config.dataset`.

    Raises:
      ValueError: a real dataset without `data_dir` / `manual_dir`, or an unknown name.
    """
    name = config.dataset
    if name == "synthetic_av":
        from avkd_jax.datasets import synthetic_av  # pylint: disable=g-import-not-at-top

        kw = config.dataset_kwargs
        builder_config = synthetic_av.make_config(
            num_train=kw.num_train,
            num_test=kw.num_test,
            world_seed=kw.world_seed,
            sample_rate=config.sample_rate,
            audio_seconds=config.audio_seconds,
        )
        data_dir = os.path.abspath(os.path.expanduser(config.data_dir or "data"))
        return synthetic_av.SyntheticAv(config=builder_config, data_dir=data_dir)
    if name in ("flickr_soundnet", "vggsound"):
        missing = [f"config.{k}" for k in ("data_dir", "manual_dir") if not config.get(k)]
        if missing:
            raise ValueError(
                f"The {name} dataset needs the raw data on disk: set {' and '.join(missing)} "
                f"(e.g. --config.data_dir=/path/to/tfds --config.manual_dir=/path/to/{name}); "
                "see the README's 'Real data' section."
            )
        raise NotImplementedError(
            f"The {name} TFDS builder is not part of this release yet (issue #3): only "
            "config 'synthetic.py' can train today."
        )
    raise ValueError(
        f"Unknown config.dataset {name!r}: expected 'synthetic_av', "
        "'flickr_soundnet' or 'vggsound'."
    )
