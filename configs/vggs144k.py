"""Paper config: train on vggsound 144k, test on vggss_test (needs the dataset on disk).

    python -m avkd_jax.main --config=configs/vggs144k.py --workdir=runs/vggs144k \
        --config.data_dir=/path/to/tfds --config.manual_dir=/path/to/raw/vggsound
"""

from avkd_jax import default_config


def get_config():
    c = default_config.base_config()
    c.dataset = "vggsound"
    # Bare names are looked up in config.metadata_dir (default <manual_dir>/metadata);
    # any other list file may be given as a path.
    c.dataset_kwargs.train_list = "vggss_144k.txt"
    c.dataset_kwargs.test_list = "vggss_test.csv"
    c.dataset_kwargs.vggss_json = "vggss.json"
    c.eval_format = "vggss"
    return c
