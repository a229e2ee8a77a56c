"""PANNs Cnn14 audio hints (docs/design.md, Model and losses): the 2048-d `embedding` of 32 kHz audio.

The architecture is the one in the installed `panns-inference` package, but the package
is never imported: its `__init__` runs `config.py`, which shells out to `wget` a label CSV
into ~/panns_data at import time. `cnn14_class` executes only the package's `models.py`
(and the `pytorch_utils.py` it imports), as submodules of a private stub package.

Resampling 22,050 → 32,000 Hz: `soxr` at 'HQ' quality through librosa (`librosa.resample(
res_type='soxr_hq')`), which is what `librosa.load(path, sr=32000)`, PANNs' own way of
reading audio, does.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import numpy as np
import torch

from avkd_jax import errors
from teachers import common

SAMPLE_RATE = 32000
EMBEDDING_DIM = 2048
CNN14_KWARGS = {
    "sample_rate": SAMPLE_RATE,
    "window_size": 1024,
    "hop_size": 320,
    "mel_bins": 64,
    "fmin": 50,
    "fmax": 14000,
    "classes_num": 527,
}
_STUB = "_teachers_panns_inference"


def cnn14_class():
    """`Cnn14` from panns_inference/models.py, loaded without running the package's __init__."""
    if f"{_STUB}.models" in sys.modules:
        return sys.modules[f"{_STUB}.models"].Cnn14
    spec = importlib.util.find_spec("panns_inference")  # Locates; does not import.
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the PANNs teacher needs `pip install panns-inference`")
    package_dir = next(iter(spec.submodule_search_locations))
    stub = types.ModuleType(_STUB)
    stub.__path__ = [package_dir]  # `from .pytorch_utils import ...` resolves in here.
    sys.modules[_STUB] = stub
    name = f"{_STUB}.models"
    module_spec = importlib.util.spec_from_file_location(
        name, os.path.join(package_dir, "models.py")
    )
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module.Cnn14


def build_cnn14(seed: int = 0) -> torch.nn.Module:
    """Cnn14 at 32 kHz with the AudioSet head, randomly initialised (eval mode)."""
    torch.manual_seed(seed)
    return cnn14_class()(**CNN14_KWARGS).eval()


def load_cnn14(path: str) -> torch.nn.Module:
    """Cnn14 with the weights of a checkpoint such as `Cnn14_mAP=0.431.pth`.

    The file is read with `torch.load(weights_only=True)`; the state_dict is under `model`
    (the released checkpoints) or bare.
    """
    checkpoint = common.load_checkpoint(path)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise errors.CheckpointError(f"{path}: expected a Cnn14 state_dict (under 'model')")
    model = build_cnn14()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise errors.CheckpointError(f"{path}: not a Cnn14 checkpoint at 32 kHz ({e})") from None
    return model.eval()


def resample(pcm: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """int16 PCM `[B, N]` at `rate` → float32 `[B, ceil(N·target/rate)]` in [-1, 1)."""
    import librosa  # Slow to import; only the PANNs teacher needs it.

    x = np.asarray(pcm, dtype=np.float32) / 32768.0
    if rate == target:
        return x
    return librosa.resample(x, orig_sr=rate, target_sr=target, res_type="soxr_hq", axis=-1)


@torch.no_grad()
def embeddings(model, wave: np.ndarray, device=None) -> np.ndarray:
    """float32 audio `[B, N]` at 32 kHz → Cnn14's `embedding` `[B, 2048]` (eval mode)."""
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if device is not None:
        x = x.to(device)
    return model(x)["embedding"].float().cpu().numpy()


def make_teacher(
    weights: str | None = None, *, random_weights: bool = False, device: str = "cpu"
) -> common.Teacher:
    """The PANNs teacher for `teachers.extract`: `audio_hint` [2048]."""
    source = common.weights_source(weights, random_weights, "panns")
    model = load_cnn14(weights) if weights else build_cnn14()
    return teacher_from_model(model, source, device=device)


def teacher_from_model(model, source: str, *, device: str = "cpu") -> common.Teacher:
    dev = common.device(device)
    model = model.to(dev).eval()

    def compute(batch):
        wave = resample(batch["audio"], batch["sample_rate"])
        return {"audio_hint": embeddings(model, wave, dev)}

    return common.Teacher(
        "panns", {"audio_hint": (EMBEDDING_DIM,)}, source, ("audio",), 16, compute
    )
