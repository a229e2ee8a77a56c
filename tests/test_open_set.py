"""EZ-VSL's open set (configs/vggs_heard.py): the eval sets 'vggss_heard_test' and
'vggss_unheard_test' on a small raw VGGSound disk whose test clips live in their own root.

The ids are checked against the lists as written here, the built boxes against the
reference code's clip-and-paint of the json boxes.
"""

import json

import numpy as np
import pytest
from helpers.configs import load_config
from helpers.real_disks import records, write_audio, write_frame, write_lines
from helpers.reference_protocol import vggss_gt

from avkd_jax import datasets
from avkd_jax.datasets import overlap, sources, vggsound
from avkd_jax.eval import protocol

SR = 22050
TRAIN = ["trn_000001", "hrd_000001", "unh_000002", "own_000001", "trn_000002"]
HEARD = ["hrd_000001", "hrd_000002"]
UNHEARD = ["unh_000001", "unh_000002"]
OWN = ["own_000001"]
BOXES = {
    "hrd_000001": [[0.1, 0.2, 0.5, 0.9]],
    "hrd_000002": [[0.0, 0.0, 0.5, 0.5], [0.4, 0.4, 1.2, 0.8]],
    "unh_000001": [[0.3, 0.1, 0.7, 0.6]],
    "unh_000002": [[0.6, 0.5, 0.9, 1.0]],
    "own_000001": [[0.2, 0.2, 0.8, 0.8]],
}


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    """(train root, test root): train clips and the lists in one, test clips in the other."""
    base = tmp_path_factory.mktemp("open_set")
    root, test_root = base / "vggsound", base / "vggss_test"
    for k, i in enumerate(["trn_000001", "trn_000002"]):
        write_frame(root, i, seed=k), write_audio(root, i, SR, 3.0)
    for k, i in enumerate(BOXES):
        write_frame(test_root, i, seed=10 + k), write_audio(test_root, i, SR, 3.0)
    meta = root / "metadata"
    write_lines(meta / "heard_train.txt", TRAIN)
    write_lines(meta / "own_test.csv", OWN, "\r\n")
    write_lines(meta / "vggss_heard_test.csv", HEARD, "\r\n")
    write_lines(meta / "vggss_unheard_test.csv", UNHEARD, "\r\n")
    entries = [{"file": i, "class": i[:3], "bbox": b} for i, b in BOXES.items()]
    (meta / "vggss.json").write_text(json.dumps(entries))
    return root, test_root


def heard_config(disk, tmp_path, **overrides):
    root, test_root = disk
    c = load_config("vggs_heard")
    c.manual_dir, c.test_manual_dir = str(root), str(test_root)
    c.data_dir = str(tmp_path / "tfds")
    # The own test split is another list here, so that what drops each id is known.
    c.dataset_kwargs.train_list = "heard_train.txt"
    c.dataset_kwargs.test_list = "own_test.csv"
    for k, v in overrides.items():
        c[k] = v
    return c


def test_the_config_is_the_paper_setup_on_the_heard_list():
    c, paper = load_config("vggs_heard"), load_config("vggs144k")
    assert c.dataset_kwargs.train_list == "vggss_heard.txt"
    assert c.eval_sets == ("vggss_heard_test", "vggss_unheard_test")
    assert dict(c.eval_lists) == {n: f"{n}.csv" for n in c.eval_sets}
    same = ("batch_size", "num_epochs", "learning_rate", "tau", "alpha_audio", "alpha_visual")
    assert [c[k] for k in same] == [paper[k] for k in same]
    assert (c.dataset, c.eval_format, c.og_fusion) == ("vggsound", "vggss", "paper")


def test_both_sets_are_test_only_builders_over_their_lists(disk, tmp_path):
    root, test_root = disk
    config = heard_config(disk, tmp_path)
    builder = datasets.get_builder(config)
    src = builder.builder_config.source
    # Left out of train: every id of the own test list and of both eval lists.
    direct = set(TRAIN) & (set(OWN) | set(HEARD) | set(UNHEARD))
    assert src.train.dropped == direct == {"hrd_000001", "unh_000002", "own_000001"}
    assert src.train.ids == ["trn_000001", "trn_000002"]
    assert src.test.listed == tuple(OWN)

    sets = datasets.get_eval_sets(config, builder)
    assert list(sets) == ["vggss_heard_test", "vggss_unheard_test"]
    for name, ids in (("vggss_heard_test", HEARD), ("vggss_unheard_test", UNHEARD)):
        s = sets[name]
        assert (s.split, s.fmt) == ("test", "vggss")
        assert isinstance(s.builder, vggsound.Vggsound) and s.builder is not builder
        source = s.builder.builder_config.source
        assert source.train is None and source.test.listed == tuple(ids)
        assert source.test.list_path == str(root / "metadata" / f"{name}.csv")
        assert source.test.root == str(test_root)  # config.test_manual_dir
        assert source.test.annotation == str(root / "metadata" / "vggss.json")
        assert s.builder.data_dir != builder.data_dir

    # Built: the listed clips, with the reference's ground truth; no train clip is an
    # eval clip, so training may start.
    builder.download_and_prepare()
    sets = datasets.prepare_eval_sets(config, builder)
    assert sorted(records(builder, "train")) == ["trn_000001", "trn_000002"]
    for name, ids in (("vggss_heard_test", HEARD), ("vggss_unheard_test", UNHEARD)):
        recs = records(sets[name].builder, "test")
        assert sorted(recs) == sorted(ids)
        for i, r in recs.items():
            batch = {"boxes": r["boxes"][None], "num_boxes": np.array([len(r["boxes"])])}
            gt = protocol.gt_map_of(batch, 0, "vggss")
            np.testing.assert_array_equal(gt, vggss_gt(BOXES[i]))
    found = overlap.check_train_test_overlap(builder, "train", sets, allow=False)
    assert found == {"vggss_heard_test": [], "vggss_unheard_test": []}


def test_roots_lists_and_overlap_follow_the_config(disk, tmp_path):
    root, test_root = disk
    # Only the heard set evaluated: the unheard ids stay in train.
    c = heard_config(disk, tmp_path, eval_sets=("vggss_heard_test",))
    assert sources.dataset_source(c).train.ids == ["trn_000001", "unh_000002", "trn_000002"]
    # allow_test_overlap keeps them all.
    c = heard_config(disk, tmp_path, allow_test_overlap=True)
    assert sources.dataset_source(c).train.ids == TRAIN
    # Without test_manual_dir the sets are rooted at manual_dir; eval_manual_dirs.<name>
    # roots one set elsewhere, and a list there is found first.
    c = heard_config(disk, tmp_path, test_manual_dir=None)
    assert sources.eval_set_source(c, "vggss_heard_test").test.root == str(root)
    other = tmp_path / "other"
    write_lines(other / "metadata" / "vggss_unheard_test.csv", ["unh_000001"])
    c.eval_manual_dirs.vggss_unheard_test = str(other)
    unheard = sources.eval_set_source(c, "vggss_unheard_test").test
    assert (unheard.root, unheard.listed) == (str(other), ("unh_000001",))
    assert unheard.list_path == str(other / "metadata" / "vggss_unheard_test.csv")
    assert "unh_000002" in sources.dataset_source(c).train.ids
    # A list given as a path (config.eval_lists).
    c.eval_lists.vggss_heard_test = str(root / "metadata" / "own_test.csv")
    assert sources.eval_set_source(c, "vggss_heard_test").test.listed == tuple(OWN)


def test_a_missing_list_names_its_field(disk, tmp_path):
    c = heard_config(disk, tmp_path)
    c.eval_lists.vggss_heard_test = "nope.csv"
    match = r"config\.eval_lists\.vggss_heard_test='nope\.csv' not found in .*metadata"
    with pytest.raises(FileNotFoundError, match=match):
        datasets.get_builder(c)  # The train split cannot leave its ids out.
    with pytest.raises(FileNotFoundError, match=match):
        sources.eval_set_source(c, "vggss_heard_test")
    c = heard_config(disk, tmp_path)
    c.eval_lists.vggss_unheard_test = str(tmp_path / "gone.csv")
    with pytest.raises(FileNotFoundError, match=r"config\.eval_lists\.vggss_unheard_test=.*gone"):
        datasets.get_builder(c)
    # A config without eval_lists (vggs10k's) names the list file it looked for.
    c = load_config("vggs10k")
    c.manual_dir, c.data_dir = str(tmp_path / "empty"), str(tmp_path / "tfds")
    c.eval_sets = ("vggss_unheard_test",)
    with pytest.raises(
        FileNotFoundError, match=r"vggss_unheard_test list='vggss_unheard_test\.csv'"
    ):
        sources.eval_list_path(c, "vggss_unheard_test")


def test_another_datasets_config_needs_a_vggss_root(disk, tmp_path):
    root, test_root = disk
    c = load_config("flickr10k")
    c.manual_dir, c.data_dir = str(tmp_path / "flickr"), str(tmp_path / "tfds")
    c.eval_sets = ("vggss_heard_test",)
    match = r"config\.eval_manual_dirs\.vggss_heard_test \(or \.vggss_test\)"
    with pytest.raises(ValueError, match=match):
        sources.eval_set_source(c, "vggss_heard_test")
    # The VGG-SS test root serves both subsets (their clips are VGG-SS test clips).
    c.eval_manual_dirs.vggss_test = str(root)
    heard = sources.eval_set_source(c, "vggss_heard_test").test
    assert (heard.root, heard.listed) == (str(root), tuple(HEARD))
    assert sources.eval_list_path(c, "vggss_heard_test") == heard.list_path
