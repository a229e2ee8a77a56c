"""Losses against independent numpy / torch computations of the same formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avkd_jax import losses


def unit(x, axis=-1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def random_embeddings(b=5, h=3, w=3, c=8, seed=0):
    rng = np.random.default_rng(seed)
    a = unit(rng.standard_normal((b, c))).astype(np.float32)
    v = unit(rng.standard_normal((b, h, w, c))).astype(np.float32)
    return a, v


def test_similarity_maps_vs_loop():
    a, v = random_embeddings(b=5, h=3, w=4, c=8)
    tau = 0.03
    out = np.asarray(losses.similarity_maps(a, v, tau))
    ref = np.zeros((5, 5, 3, 4))
    for i in range(5):
        for j in range(5):
            for y in range(3):
                for x in range(4):
                    ref[i, j, y, x] = np.dot(v[j, y, x].astype(np.float64), a[i]) / tau
    assert out.shape == (5, 5, 3, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


def test_similarity_maps_bfloat16_accumulates_in_float32():
    a, v = random_embeddings(b=4, h=2, w=2, c=512, seed=1)
    a16, v16 = jnp.asarray(a, jnp.bfloat16), jnp.asarray(v, jnp.bfloat16)
    out = losses.similarity_maps(a16, v16, 0.03)
    assert out.dtype == jnp.float32
    # The reference sees the same bfloat16-rounded inputs, summed exactly.
    a_r = np.asarray(a16.astype(jnp.float32), np.float64)
    v_r = np.asarray(v16.astype(jnp.float32), np.float64)
    ref = np.einsum("ic,jhwc->ijhw", a_r, v_r) / 0.03
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-3)


def test_contrastive_loss_vs_torch():
    a, v = random_embeddings(b=5, h=3, w=3, c=8, seed=2)
    tau = 0.03
    loss = float(losses.contrastive_loss(losses.similarity_maps(a, v, tau)))

    ta, tv = torch.tensor(a, dtype=torch.float64), torch.tensor(v, dtype=torch.float64)
    sim = torch.einsum("ic,jhwc->ijhw", ta, tv) / tau
    logits = sim.flatten(2).max(dim=2).values
    target = torch.arange(5)
    ref = F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-5)


def test_contrastive_loss_hand_worked():
    # 2 x 2 logits [[2, 0], [1, 3]] put at one cell of 1 x 2 maps whose other cell is lower.
    logits = np.array([[2.0, 0.0], [1.0, 3.0]])
    s = np.stack([logits - 5.0, logits], axis=-1)[:, :, None, :]  # [2, 2, 1, 2]
    rows = -(2 - np.log(np.exp(2) + 1)) - (3 - np.log(np.exp(1) + np.exp(3)))
    cols = -(2 - np.log(np.exp(2) + np.exp(1))) - (3 - np.log(1 + np.exp(3)))
    expected = rows / 2 + cols / 2
    np.testing.assert_allclose(float(losses.contrastive_loss(s)), expected, rtol=1e-6)


def test_contrastive_loss_is_stable_for_large_logits():
    s = np.array([[[[1e4]], [[-1e4]]], [[[-1e4]], [[1e4]]]], np.float32)
    assert float(losses.contrastive_loss(s)) == pytest.approx(0.0, abs=1e-6)
    s_bad = s[:, ::-1]
    assert float(losses.contrastive_loss(s_bad)) == pytest.approx(2 * 2e4, rel=1e-6)


def test_audio_hint_loss():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 16)).astype(np.float32)
    e = rng.standard_normal((4, 16)).astype(np.float32)
    ref = F.mse_loss(torch.tensor(a), torch.tensor(e)).item()
    np.testing.assert_allclose(float(losses.audio_hint_loss(a, e)), ref, rtol=1e-6)


def torch_resize(maps, out_hw, align_corners):
    t = torch.tensor(np.asarray(maps, np.float32))[:, None]
    return F.interpolate(t, size=out_hw, mode="bilinear", align_corners=align_corners)[:, 0].numpy()


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(
    "in_hw,out_hw",
    [
        ((7, 7), (25, 25)),
        ((7, 7), (224, 224)),
        ((14, 14), (7, 7)),
        ((9, 6), (4, 11)),
        ((5, 5), (5, 5)),
        ((3, 8), (1, 1)),
        ((1, 4), (6, 3)),
    ],
)
def test_resize_bilinear_vs_torch(in_hw, out_hw, align_corners):
    rng = np.random.default_rng(sum(in_hw) + sum(out_hw))
    maps = rng.standard_normal((3,) + in_hw).astype(np.float32)
    out = losses.resize_bilinear(maps, out_hw, align_corners=align_corners)  # numpy in
    assert isinstance(out, jax.Array) and out.shape == (3,) + out_hw
    ref = torch_resize(maps, out_hw, align_corners)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-5)


def test_resize_bilinear_downsampling_does_not_antialias():
    # 14 -> 7 with half-pixel centres averages exactly two neighbours per axis.
    maps = np.arange(2 * 14 * 14, dtype=np.float32).reshape(2, 14, 14)
    out = np.asarray(losses.resize_bilinear(maps, (7, 7), align_corners=False))
    ref = maps.reshape(2, 7, 2, 7, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)


def numpy_visual_hint(v, hint):
    m = v.astype(np.float64).mean(axis=-1)
    m = torch_resize(m, hint.shape[-2:], align_corners=False).astype(np.float64)
    kept = ~np.isnan(hint).any(axis=(1, 2))
    if not kept.any():
        return 0.0
    return float(np.mean((m[kept] - hint[kept]) ** 2))


def hint_case(seed=4):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((4, 7, 7, 16)).astype(np.float32)
    hint = rng.random((4, 25, 25)).astype(np.float32) * 0.1
    return v, hint


def test_visual_hint_loss_all_kept():
    v, hint = hint_case()
    np.testing.assert_allclose(
        float(losses.visual_hint_loss(v, hint)), numpy_visual_hint(v, hint), rtol=1e-5
    )


def test_visual_hint_loss_drops_nan_samples():
    v, hint = hint_case(seed=5)
    hint[1] = np.nan
    hint[3, 4, 7] = np.nan  # one NaN cell drops the whole sample
    expected = numpy_visual_hint(v, hint)
    assert expected == pytest.approx(numpy_visual_hint(v[[0, 2]], hint[[0, 2]]))
    np.testing.assert_allclose(float(losses.visual_hint_loss(v, hint)), expected, rtol=1e-5)

    grad = jax.grad(losses.visual_hint_loss)(jnp.asarray(v), jnp.asarray(hint))
    grad = np.asarray(grad)
    assert np.isfinite(grad).all()
    assert np.all(grad[[1, 3]] == 0) and np.any(grad[[0, 2]] != 0)


def test_visual_hint_loss_all_nan_is_zero_with_finite_grad():
    v, hint = hint_case(seed=6)
    hint[:] = np.nan
    assert float(losses.visual_hint_loss(v, hint)) == 0.0
    grad = np.asarray(jax.grad(losses.visual_hint_loss)(jnp.asarray(v), jnp.asarray(hint)))
    assert np.isfinite(grad).all() and np.all(grad == 0)


def test_visual_hint_loss_gradient_vs_torch():
    v, hint = hint_case(seed=7)
    hint[2] = np.nan
    grad = np.asarray(jax.grad(losses.visual_hint_loss)(jnp.asarray(v), jnp.asarray(hint)))

    tv = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    m = F.interpolate(tv.mean(-1)[:, None], size=(25, 25), mode="bilinear", align_corners=False)
    kept = [0, 1, 3]
    loss = ((m[kept, 0] - torch.tensor(hint[kept], dtype=torch.float64)) ** 2).mean()
    loss.backward()
    np.testing.assert_allclose(grad, tv.grad.numpy(), rtol=1e-4, atol=1e-9)


def test_visual_feature_hint_loss_vs_torch_and_shape_check():
    _, v = random_embeddings(b=3, h=2, w=2, c=6, seed=5)
    e = np.random.default_rng(6).standard_normal(v.shape).astype(np.float16)
    got = float(losses.visual_feature_hint_loss(v, e))
    ref = F.mse_loss(torch.tensor(v, dtype=torch.float64), torch.tensor(e, dtype=torch.float64))
    np.testing.assert_allclose(got, ref.item(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"student's grid"):
        losses.visual_feature_hint_loss(v, e[:, :1])
