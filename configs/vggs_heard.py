"""Paper config, EZ-VSL's open set: train on VGGSound's 110 heard classes (vggss_heard.txt),
test on VGG-SS clips of those classes (vggss_heard_test) and of 110 others
(vggss_unheard_test); needs the dataset on disk.

    python -m avkd_jax.main --config=configs/vggs_heard.py --workdir=runs/vggs_heard \
        --config.data_dir=/path/to/tfds --config.manual_dir=/path/to/raw/vggsound

The test clips are read from --config.test_manual_dir (default manual_dir), or per set
from --config.eval_manual_dirs.vggss_heard_test / .vggss_unheard_test. EZ-VSL trained this
one for 20 epochs (scripts/train_vggsoundheard.sh); add --config.num_epochs=20 for theirs.
"""

import ml_collections

from avkd_jax import default_config


def get_config():
    c = default_config.base_config()
    c.dataset = "vggsound"
    # Bare names are looked up in config.metadata_dir (default <manual_dir>/metadata);
    # any other list file may be given as a path.
    c.dataset_kwargs.train_list = "vggss_heard.txt"
    # The own test split stays the whole VGG-SS, so that 'vggss_test' keeps its meaning
    # when added to eval_sets.
    c.dataset_kwargs.test_list = "vggss_test.csv"
    c.dataset_kwargs.vggss_json = "vggss.json"
    c.eval_format = "vggss"
    c.eval_sets = ("vggss_heard_test", "vggss_unheard_test")
    c.eval_lists = ml_collections.ConfigDict(
        {"vggss_heard_test": "vggss_heard_test.csv", "vggss_unheard_test": "vggss_unheard_test.csv"}
    )
    for name in c.eval_sets:
        c.eval_manual_dirs[name] = ml_collections.FieldReference(None, field_type=str)
    return c
