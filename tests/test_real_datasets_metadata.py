"""The public EZ-VSL metadata files (read where `<repo>/../shared/metadata` has them):
the overlap the builders leave out and the report prints, against direct set arithmetic,
and vggss.json's corrupt boxes against the reference code's ground truth."""

import json
import math
import pathlib

import numpy as np
import pytest
from helpers.configs import load_config
from helpers.paths import REPO
from helpers.reference_protocol import vggss_gt

from avkd_jax.datasets import raw_examples, report, sources, vggss_annotations
from avkd_jax.eval import protocol

META = REPO.parent / "shared" / "metadata"
pytestmark = pytest.mark.skipif(not META.is_dir(), reason=f"{META} is not here")


def list_ids(name):
    """Ids of a list read directly: first csv column, '.png' suffix removed."""
    out = []
    for line in (META / name).read_text().splitlines():
        first = line.strip().split(",")[0]
        if first:
            out.append(first.removesuffix(".png"))
    return out


def real_config(name, tmp_path, **overrides):
    c = load_config(name)
    c.manual_dir = str(tmp_path / "raw")  # No clip on disk: only the lists are read.
    c.data_dir = str(tmp_path / "tfds")
    c.metadata_dir = str(META)
    for k, v in overrides.items():
        c[k] = v
    return c


PAPER = [
    ("flickr10k", "flickr_10k.txt", "flickr_test.csv", "flickr_test"),
    ("flickr144k", "flickr_144k.txt", "flickr_test.csv", "flickr_test"),
    ("vggs10k", "vggss_10k.txt", "vggss_test.csv", "vggss_test"),
    ("vggs144k", "vggss_144k.txt", "vggss_test.csv", "vggss_test"),
]


@pytest.mark.parametrize("name,train_list,test_list,own", PAPER)
def test_overlap_of_the_public_lists(name, train_list, test_list, own, tmp_path):
    train, test = list_ids(train_list), list_ids(test_list)
    direct = set(train) & set(test)
    c = real_config(name, tmp_path, eval_sets=("flickr_test", "vggss_test"))
    src = sources.dataset_source(c)
    assert src.train.dropped == direct
    assert src.train.ids == [i for i in train if i not in direct]
    overlaps = report.eval_overlaps(c, src.train.listed)
    assert set(overlaps[own]["overlap"]) == direct and overlaps[own]["size"] == len(set(test))
    other = "vggss_test" if own == "flickr_test" else "flickr_test"
    other_ids = list_ids("flickr_test.csv" if other == "flickr_test" else "vggss_test.csv")
    assert set(overlaps[other]["overlap"]) == set(train) & set(other_ids) == set()
    if name == "vggs144k":
        # docs/data.md (Train/test overlap) and the README state it: thousands of VGG-SS
        # test clips are in the 144k train list.
        assert len(direct) > 3000
        assert f"{len(direct):,} (72 %) in `vggss_144k.txt`" in (REPO / "docs/data.md").read_text()
        assert f"{len(direct):,} of the" in (REPO / "README.md").read_text()
    # Kept with allow_test_overlap: a different build.
    kept = sources.dataset_source(real_config(name, tmp_path, allow_test_overlap=True))
    assert kept.train.ids == train and not kept.train.dropped
    if direct:
        assert kept.config_name(22050, 3.0) != src.config_name(22050, 3.0)


def test_flickr_test_lists(tmp_path):
    src = sources.dataset_source(real_config("flickr10k", tmp_path))
    rows = [line.split(",") for line in (META / "flickr_test.csv").read_text().split()]
    assert list(src.test.listed) == [r[0] for r in rows] and len(rows) == 249
    assert src.test.keyframes == {r[0]: int(r[1]) for r in rows}
    c = real_config("flickr10k", tmp_path)
    c.dataset_kwargs.test_list = "flickr_test_list_senocak.txt"  # The original 250.
    senocak = sources.dataset_source(c).test
    assert len(senocak.listed) == 250 and not senocak.keyframes
    assert set(senocak.listed) - set(src.test.listed) == {"3908875357"}


def test_vggss_json_corrupt_boxes_keep_the_reference_ground_truth():
    entries = json.loads((META / "vggss.json").read_text())
    ann = vggss_annotations.read_vggss_json(META / "vggss.json")
    assert len(ann.boxes) == len(entries) == 5158 and not ann.malformed and not ann.notes
    corrupt = [
        (e["file"], k)
        for e in entries
        for k, b in enumerate(e["bbox"])
        if not all(math.isfinite(c) and -1 <= c <= 2 for c in b)
    ]
    dropped, empty = [], []
    for e in entries:
        boxes, index, notes = raw_examples.clean_boxes(ann.boxes[e["file"]], "vggss", "vggss.json")
        dropped += [(e["file"], k) for k in range(len(e["bbox"])) if k not in index]
        assert len(notes) == len(e["bbox"]) - len(index)
        if len(boxes) == 0:
            empty.append(e["file"])
        # What the builder stores (clipped yxyx) paints what the reference paints from
        # the raw entry, corrupt boxes included: every corrupt value is a max coordinate,
        # which the reference clips to 0, so those boxes paint nothing there either.
        xyxy = boxes[:, [1, 0, 3, 2]].astype(np.float64)
        np.testing.assert_array_equal(protocol.gt_map(xyxy, "vggss"), vggss_gt(e["bbox"]))
    assert dropped == corrupt and len({f for f, _ in corrupt}) >= 10
    # One entry has nothing but a corrupt box: kept with no box, it scores cIoU 0 in the
    # reference and here alike.
    assert empty == [
        f for f in ann.boxes if all((f, k) in corrupt for k in range(len(ann.boxes[f])))
    ]


def test_report_on_the_public_vggs10k_lists(tmp_path):
    c = real_config("vggs10k", tmp_path, eval_sets=("vggss_test", "flickr_test"))
    numbers, text = report.build_report(c, str(tmp_path / "report"), decode=False)
    train, test = list_ids("vggss_10k.txt"), list_ids("vggss_test.csv")
    direct = set(train) & set(test)
    t = numbers["splits"]["train"]
    assert (t["listed"], len(t["left_out"]), t["found"]) == (len(train), len(direct), 0)
    assert len({r[0] for r in t["missing"]}) == len(train) - len(direct)
    assert numbers["splits"]["test"]["found"] == 0
    assert f"vggss_test: {len(direct)} of its {len(set(test))} ids are in the train list" in text
    assert pathlib.Path(tmp_path / "report" / "overlap-vggss_test.txt").read_text().split() == [
        i for i in dict.fromkeys(test) if i in direct
    ]


def test_open_set_lists(tmp_path):
    """EZ-VSL's open set: vggss_heard.txt for training, vggss_heard_test.csv and
    vggss_unheard_test.csv for testing, read here directly and through configs/vggs_heard.py."""
    heard, unheard = list_ids("vggss_heard_test.csv"), list_ids("vggss_unheard_test.csv")
    train, vggss = list_ids("vggss_heard.txt"), list_ids("vggss_test.csv")
    assert (len(train), len(heard), len(unheard)) == (59_468, 2_564, 2_575)
    assert all(len(set(x)) == len(x) for x in (train, heard, unheard))
    # The two test lists split VGG-SS by class: 110 classes each, disjoint, each list every
    # VGG-SS clip of its classes; the 19 clips of the one class left ('singing choir') are
    # in neither.
    cls = {e["file"]: e["class"] for e in json.loads((META / "vggss.json").read_text())}
    heard_classes, unheard_classes = {cls[i] for i in heard}, {cls[i] for i in unheard}
    assert len(heard_classes) == len(unheard_classes) == 110
    assert not heard_classes & unheard_classes
    assert set(heard) == {i for i in vggss if cls[i] in heard_classes}
    assert set(unheard) == {i for i in vggss if cls[i] in unheard_classes}
    rest = set(vggss) - set(heard) - set(unheard)
    assert len(rest) == 19 and {cls[i] for i in rest} == {"singing choir"}
    assert len(set(cls.values())) == 221
    # No test clip is a training clip (no vggss.json clip at all is, so the classes of
    # the train list cannot be read from these files).
    assert not set(train) & (set(heard) | set(unheard) | set(vggss) | set(cls))

    c = real_config("vggs_heard", tmp_path)
    src = sources.dataset_source(c)
    assert src.train.ids == train and not src.train.dropped
    assert list(src.test.listed) == vggss
    for name, ids in (("vggss_heard_test", heard), ("vggss_unheard_test", unheard)):
        test = sources.eval_set_source(c, name).test
        assert list(test.listed) == ids and test.list_path == str(META / f"{name}.csv")
        assert test.root == c.manual_dir and test.box_format == "vggss"
