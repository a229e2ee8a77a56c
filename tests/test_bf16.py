"""The bfloat16 compute path (config.model.dtype='bfloat16') against float32, and the
PyTorch reference step the benchmarks time (teachers/torch_avc.py) against ours."""

import jax
import jax.numpy as jnp
import numpy as np
import torch
from helpers.configs import random_batch, tiny_config

from avkd_jax import models, pretrained, train
from avkd_jax import state as train_state
from teachers import convert_avc, torch_avc

# bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 ≈ 0.2%). Through two random
# ResNet18s the unit embeddings' cosines move by ~1e-3, i.e. ~0.03-0.1 in logits of scale
# 1/τ ≈ 33: the loss terms of this tiny random model moved by 1.6% at most with seed 0
# (4.4% over seeds 0-2, contrastive term), so 5%.
BF16_RTOL = 5e-2


def hinted_config(tmp_path):
    """The tiny config with both hint losses on, at the paper's weights."""
    c = tiny_config(tmp_path)
    c.alpha_audio, c.alpha_visual = 1000.0, 100_000.0
    return c


def init_variables(config):
    model = models.create_model(config)
    return jax.jit(lambda rng: models.init_variables(model, config, rng))(jax.random.key(0))


def terms_of(config, variables, batch):
    """Our loss terms (train mode: batch statistics), as Python floats."""
    model = models.create_model(config)
    terms = jax.jit(
        lambda v, b: train.loss_terms(v["params"], v["batch_stats"], b, model=model, config=config)[
            1
        ][0]
    )(variables, batch)
    return {k: float(v) for k, v in terms.items()}


def test_bfloat16_loss_terms_match_float32(tmp_path):
    config = hinted_config(tmp_path)
    variables = init_variables(config)
    batch = random_batch(config)
    f32 = terms_of(config, variables, batch)
    config.model.dtype = "bfloat16"
    bf16 = terms_of(config, variables, batch)
    assert set(f32) == {"loss", "loss_contrastive", "loss_audio_hint", "loss_visual_hint"}
    for name in f32:
        np.testing.assert_allclose(bf16[name], f32[name], rtol=BF16_RTOL, err_msg=name)
    # Not trivially equal: the bfloat16 path does round.
    assert any(bf16[k] != f32[k] for k in f32)


def test_bfloat16_keeps_float32_parameters_and_state(tmp_path):
    """Parameters, BatchNorm statistics, Adam's moments and the metrics stay float32 (the
    step's output types, by abstract evaluation: nothing is compiled)."""
    config = hinted_config(tmp_path)
    config.model.dtype = "bfloat16"
    model = models.create_model(config)
    assert model.dtype == jnp.bfloat16
    state = jax.eval_shape(
        lambda rng: train_state.init_state(model, config, rng), jax.random.key(0)
    )
    batch = jax.tree.map(jnp.asarray, random_batch(config))
    new_state, metrics = jax.eval_shape(
        lambda s, b: train.train_step(s, b, model=model, config=config), state, batch
    )
    for tree in (state, new_state):
        floats = {x.dtype for x in jax.tree.leaves(tree) if x.dtype != jnp.int32}
        assert floats == {jnp.dtype(jnp.float32)}
    assert {m.dtype for m in jax.tree.leaves(metrics)} == {jnp.dtype(jnp.float32)}


def test_torch_reference_step_computes_our_loss(tmp_path):
    """The benchmark's PyTorch step does the same work as ours: the same weights (through
    teachers.convert_avc) and batch give the same loss terms in float32."""
    config = hinted_config(tmp_path)
    net = torch_avc.create_model(config, seed=1)
    with torch.no_grad():  # BatchNorm affine parameters away from (1, 0).
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    batch = random_batch(config, seed=2)
    alphas = (config.alpha_contrastive, config.alpha_audio, config.alpha_visual)
    with torch.no_grad():
        total, terms = torch_avc.loss_terms(
            net,
            torch_avc.torch_batch(batch),
            tau=config.tau,
            alphas=alphas,
            sample_rate=config.sample_rate,
        )
    variables = pretrained.unflatten(convert_avc.avc_to_flax(net.state_dict()))
    ours = terms_of(config, variables, batch)
    np.testing.assert_allclose(float(total), ours["loss"], rtol=1e-4)
    for name, value in terms.items():
        np.testing.assert_allclose(float(value), ours[name], rtol=1e-4, err_msg=name)


def test_torch_reference_spectrogram_is_scipys():
    import scipy.signal

    pcm = np.random.default_rng(0).normal(0, 2000, [2, 11025]).astype(np.int16)
    ours = torch_avc.log_spectrogram(torch.from_numpy(pcm), 22050).numpy()[:, 0]
    _, _, s = scipy.signal.spectrogram(pcm / 32768.0, 22050, nperseg=512, noverlap=274)
    np.testing.assert_allclose(ours, np.log(s + 1e-7) / 12, atol=2e-5)
