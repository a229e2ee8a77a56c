"""The extended, negative-audio and IS3 protocols in the evaluation loop (`config.evals`)
on the tiny synthetic world: which pairs they see, checked against the world's own
scenes.json, and the audio-blind centre prior's numbers written out in numpy here."""

import json
import os

import jax
import numpy as np
import pytest

from avkd_jax import datasets, models, sharding
from avkd_jax.eval import diagnostics, evaluator


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
        evaluator.offscreen_partners(data, np.array([0, 1, 2, 3])), [2, 2, 1, 1]
    )
    # Every other scene sounds a class the image holds: no partner.
    np.testing.assert_array_equal(evaluator.offscreen_partners(data, np.array([0, 3])), [-1, -1])


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
