"""Paper config: train on vggsound 144k, test on vggss_test (needs the dataset on disk).

    python -m avkd_jax.main --config=configs/vggs144k.py --workdir=runs/vggs144k \
        --config.data_dir=/path/to/tfds --config.manual_dir=/path/to/raw/vggsound
"""

from avkd_jax import default_config


def get_config():
    c = default_config.base_config()
    c.dataset = "vggsound"
    c.dataset_kwargs.train_subset = "144k"
    c.eval_format = "vggss"
    return c
