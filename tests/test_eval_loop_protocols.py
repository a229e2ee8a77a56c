"""The extended, negative-audio and IS3 protocols in the evaluation loop (`config.evals`)
on the tiny synthetic world: which pairs they see, checked against the world's own
scenes.json, and the audio-blind centre prior's numbers written out in numpy here."""

import json
import os

import jax
import numpy as np
import pytest

from avkd_jax import datasets, models, sharding
from avkd_jax.eval import diagnostics, evaluator, scene_negatives


def fake_scene_batch():
    """Four scenes: (object labels, sounding label); row 4 is padding."""
    labels = np.array([[1, 2, 0], [2, 0, 0], [3, 1, 0], [1, 0, 0], [5, 5, 5]])
    num = np.array([2, 1, 2, 1, 3])
    sounding = np.zeros(labels.shape, bool)
    sounding[[0, 1, 2, 3, 4], [0, 0, 0, 0, 0]] = True
    return {
        "objects": {"label": labels, "sounding": sounding, "bbox": np.zeros(labels.shape + (4,))},
        "num_objects": num,
    }


def test_offscreen_partner_is_the_next_scene_whose_sound_is_absent():
    data = fake_scene_batch()
    # Row 0 holds classes {1, 2}: row 1 sounds 2, row 2 sounds 3 → row 2.
    # Row 1 holds {2}: row 2 sounds 3. Row 2 holds {3, 1}: row 3 sounds 1, row 0 sounds 1,
    # row 1 sounds 2 → row 1. Row 3 holds {1}: row 0 sounds 1, row 1 sounds 2 → row 1.
    np.testing.assert_array_equal(
        scene_negatives.offscreen_partners(data, np.array([0, 1, 2, 3])), [2, 2, 1, 1]
    )
    # Every other scene sounds a class the image holds: no partner.
    np.testing.assert_array_equal(
        scene_negatives.offscreen_partners(data, np.array([0, 3])), [-1, -1]
    )


@pytest.fixture(scope="module")
def evaluated(tiny_data_dir):
    from helpers.configs import tiny_config

    config = tiny_config(tiny_data_dir)
    config.evals = ("lvs", "extended", "negative_audio", "is3")
    builder = datasets.get_builder(config)
    builder.download_and_prepare()
    model = models.create_model(config)
    variables = models.init_variables(model, config, jax.random.key(3))
    mesh = sharding.create_mesh()
    results = evaluator.evaluate_split(
        model, {"AVC": variables}, builder, config, mesh, baselines=True
    )
    with open(os.path.join(builder.raw_dir(), "scenes.json")) as f:
        return results, json.load(f)


def test_every_protocol_sees_its_pairs(evaluated):
    results, scenes = evaluated
    n_swap = sum(s["swap_index"] is not None for s in scenes.values())
    assert n_swap > 0
    for name in ("AVC", "untrained", "centre_prior", "every_object"):
        if name not in results:
            continue
        r = results[name]
        assert r["is3_n_scenes"] == n_swap
        assert 0 < r["ext_n_neg"] <= len(scenes)
        for key in ("ext_ap", "ext_max_f1", "ext_loc_acc", "ext_auc", "iiou", "iauc"):
            assert 0 <= r[key] <= 100
        for kind in ("silence", "noise", "offscreen"):
            assert 0 <= r[f"pia_{kind}"] <= 100


def test_the_centre_prior_is_blind_to_every_negative_sound(evaluated):
    results, scenes = evaluated
    r = results["centre_prior"]
    centre = diagnostics.centre_prior_map()
    unit = (centre - centre.min()) / (centre.max() - centre.min())
    # pIA at S > 0: the cells of the normalised prior above one half, whatever it hears.
    want = 100 * np.mean(unit.astype(np.float32) > np.float32(0.5))
    for kind in ("silence", "noise", "offscreen"):
        assert r[f"pia_{kind}"] == pytest.approx(want, abs=1e-6)
    # The same confidence for an image's positive and negative pair: at best chance AP.
    assert r["ext_ap"] < 75
    # A scene passes only when both its instances do.
    assert r["iiou"] <= r["is3_ciou"]


def test_og_avc_under_the_extended_protocol_is_slavcs_fusion():
    """OG-AVC's extended scores: α·AV + (1 − α)·object, each bicubic (torch) and bounded
    and mapped linearly by fixed bounds (AV ±1/τ, the object map [0, 2.5]), α = 0.9,
    written out here."""
    import torch
    import torch.nn.functional as F

    from avkd_jax.eval import extended, protocol

    rng = np.random.default_rng(0)
    n, tau = 3, 0.03
    pos = rng.uniform(-1, 1, (n, 5, 5)).astype(np.float32)
    neg = rng.uniform(-1, 1, (n, 5, 5)).astype(np.float32)
    obj = rng.uniform(0, 3, (n, 5, 5)).astype(np.float32)
    boxes = [[[10, 10, 120, 140]], [[0, 100, 200, 224]], [[50, 50, 90, 90]]]
    gts = [protocol.gt_map(np.asarray(b) / 224, "vggss") for b in boxes]
    ids = ["a", "b", "c"]
    batch = evaluator.EvalBatch({"num_boxes": np.array([1, 1, 1])}, np.arange(n), ids, gts)
    maps = evaluator.Maps(
        {"AVC": np.zeros((n, 224, 224)), "OG-AVC": np.zeros((n, 224, 224))},
        ("AVC",),
        {"AVC": pos},
        negatives={"AVC": {"offscreen": neg}},
        offscreen_ids=["b", "c", None],
        object_grid=obj,
        guided=("OG-AVC", "AVC"),
    )
    acc = extended.Extended()
    acc.update(batch, maps)

    def bicubic(m):
        t = torch.from_numpy(m)[None, None]
        return F.interpolate(t, size=(224, 224), mode="bicubic", align_corners=True)[0, 0].numpy()

    def theirs(s, o):
        # Their min_max_norm with fixed bounds: a linear map, nothing clipped.
        av = (bicubic(s / tau) + 1 / tau) / (2 / tau)
        return 0.9 * av + 0.1 * bicubic(o) / 2.5

    want = extended.ExtendedScores(tau)
    want.add_scores("a", theirs(pos[0], obj[0]), gts[0], 1)
    want.add_scores("a__b", theirs(neg[0], obj[0]), None, 0)
    want.add_scores("b", theirs(pos[1], obj[1]), gts[1], 1)
    want.add_scores("b__c", theirs(neg[1], obj[1]), None, 0)
    want.add_scores("c", theirs(pos[2], obj[2]), gts[2], 1)
    got = acc.scores["OG-AVC"]
    assert got.keys == want.keys
    np.testing.assert_allclose(got.conf, want.conf, atol=1e-5)
    np.testing.assert_allclose(got.ciou, want.ciou, atol=1e-3)
