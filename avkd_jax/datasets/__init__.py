"""TFDS builders, and `get_builder(config)` / `get_eval_sets(config)`: the one place a config
becomes a dataset.

Kept free of TensorFlow at import time: the builder modules are imported on first use.
"""

import collections
import os

# (builder, split, ground-truth format of docs/design.md, Evaluation) of one evaluation set.
EvalSet = collections.namedtuple("EvalSet", ["builder", "split", "fmt"])


def _data_dir(config, default=None) -> str:
    return os.path.abspath(os.path.expanduser(config.data_dir or default))


def _real_builder(source, config):
    """The TFDS builder of a real dataset's `sources.DatasetSource` (not prepared yet)."""
    # Imported on use: the builders pull in TensorFlow.
    from avkd_jax.datasets import av_builder, flickr_soundnet, sources, vggsound

    cls = {sources.FLICKR: flickr_soundnet.FlickrSoundnet, sources.VGGSOUND: vggsound.Vggsound}
    return cls[source.dataset](
        config=av_builder.make_config(source, config.sample_rate, config.audio_seconds),
        data_dir=_data_dir(config),
        workers=config.get("prepare_workers") or 0,
    )


def get_builder(config):
    """The prepared-or-preparable TFDS builder for `config.dataset`.

    Raises:
      ValueError: a real dataset without `data_dir` / `manual_dir`, or an unknown name.
      FileNotFoundError: a list or annotation file the config names is not there.
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
        return synthetic_av.SyntheticAv(config=builder_config, data_dir=_data_dir(config, "data"))
    if name in ("flickr_soundnet", "vggsound"):
        missing = [f"config.{k}" for k in ("data_dir", "manual_dir") if not config.get(k)]
        if missing:
            raise ValueError(
                f"The {name} dataset needs the raw data on disk: set {' and '.join(missing)} "
                f"(e.g. --config.data_dir=/path/to/tfds --config.manual_dir=/path/to/{name}); "
                "see docs/data.md."
            )
        from avkd_jax.datasets import sources

        return _real_builder(sources.dataset_source(config), config)
    raise ValueError(
        f"Unknown config.dataset {name!r}: expected 'synthetic_av', "
        "'flickr_soundnet' or 'vggsound'."
    )


def get_eval_sets(config, builder=None) -> dict:
    """name → `EvalSet` for each set of `config.eval_sets` (empty: the dataset's own).

    The training dataset's own set is `builder`'s (default `get_builder(config)`) test
    split with `config.eval_split` / `config.eval_format`; any other set is a test-only
    builder over its own list, rooted at `config.eval_manual_dirs.<name>` (a set of the
    training dataset: by default its test root; `sources.eval_root`). Builders are
    returned unprepared.

    Raises:
      ValueError: an unknown set name, a missing `eval_manual_dirs` entry, or
        'synthetic_test' asked of a real-data config.
    """
    from avkd_jax.datasets import sources

    builder = builder if builder is not None else get_builder(config)
    out = {}
    for name in sources.eval_set_names(config):
        dataset, fmt = sources.EVAL_SETS[name]
        if sources.is_own_eval_set(config, name):
            out[name] = EvalSet(builder, config.eval_split, config.eval_format)
        elif dataset == sources.SYNTHETIC:
            raise ValueError("'synthetic_test' is evaluated by configs/synthetic.py only.")
        else:
            out[name] = EvalSet(
                _real_builder(sources.eval_set_source(config, name), config), "test", fmt
            )
    return out


def prepare_eval_sets(config, builder) -> dict:
    """`get_eval_sets(config, builder)` with every set's builder prepared (built on first
    use from its raw root, reused afterwards)."""
    eval_sets = get_eval_sets(config, builder)
    for s in eval_sets.values():
        if s.builder is not builder:
            s.builder.download_and_prepare()
    return eval_sets
