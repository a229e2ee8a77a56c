"""Paper config: train on vggsound 10k, test on vggss_test (needs the dataset on disk).

    python -m avkd_jax.main --config=configs/vggs10k.py --workdir=runs/vggs10k \
        --config.data_dir=/path/to/tfds --config.manual_dir=/path/to/raw/vggsound
"""

from avkd_jax import default_config


def get_config():
    c = default_config.base_config()
    c.dataset = "vggsound"
    c.dataset_kwargs.train_subset = "10k"
    c.eval_format = "vggss"
    return c
