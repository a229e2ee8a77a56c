"""Paper config: train on flickr_soundnet 10k, test on flickr_test (needs the dataset on disk).

    python -m avkd_jax.main --config=configs/flickr10k.py --workdir=runs/flickr10k \
        --config.data_dir=/path/to/tfds --config.manual_dir=/path/to/raw/flickr_soundnet
"""

from avkd_jax import default_config


def get_config():
    c = default_config.base_config()
    c.dataset = "flickr_soundnet"
    # Bare names are looked up in config.metadata_dir (default <manual_dir>/metadata);
    # any other list file may be given as a path.
    c.dataset_kwargs.train_list = "flickr_10k.txt"
    c.dataset_kwargs.test_list = "flickr_test.csv"
    c.eval_format = "flickr"
    return c
