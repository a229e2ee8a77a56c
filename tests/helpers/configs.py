"""The tests' configs (`configs/*.py` shrunk to seconds) and a random raw batch."""

import importlib.util

import numpy as np

from helpers.paths import REPO


def load_config(name: str):
    """`configs/<name>.py`'s get_config()."""
    spec = importlib.util.spec_from_file_location(f"config_{name}", REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def tiny_config(data_dir):
    """The synthetic config shrunk to seconds: 64² images (a 2×2 map), 0.5 s audio,
    1/8-width nets."""
    c = load_config("synthetic")
    c.data_dir = str(data_dir)
    c.dataset_kwargs.num_train = 48
    c.dataset_kwargs.num_test = 12
    c.dataset_kwargs.world_seed = 3
    c.image_size = 64
    c.resize_size = 70
    c.audio_seconds = 0.5
    c.model.width = 0.125
    c.model.embed_dim = 16
    # The tests check the arithmetic against float32 references; test_bf16 the bfloat16.
    c.model.dtype = "float32"
    c.batch_size = 8
    c.num_epochs = 2
    # A constant rate: a run stopped after its first epoch and resumed then takes the
    # same steps as one run straight through (a cosine would span 1 epoch, then 2).
    c.lr_schedule = "constant"
    c.shuffle_buffer = 64
    c.log_every_steps = 2
    c.checkpoint_every_steps = 3
    c.eval_every_epochs = 100
    c.eval_batch_size = 5
    # The contrastive loss alone unless a test asks for teachers (they need hint shards).
    c.teachers = ()
    c.alpha_audio = 0.0
    c.alpha_visual = 0.0
    # Random initialisation and no object model unless a test asks: the synthetic
    # stand-in for ImageNet takes minutes to train.
    c.init_visual_npz = None
    c.object_npz = None
    return c


def random_batch(config, seed=0):
    """Raw inputs of the train step: uint8 images, int16 noise, float16 hints (one
    visual hint all-NaN: DETR found nothing)."""
    rng = np.random.default_rng(seed)
    b, s = config.batch_size, config.image_size
    n = round(config.sample_rate * config.audio_seconds)
    visual_hint = rng.uniform(0, 2 / 625, [b, 25, 25]).astype(np.float16)
    visual_hint[1] = np.nan
    return {
        "image": rng.integers(0, 256, [b, s, s, 3], dtype=np.uint8),
        "audio": (rng.normal(0, 3000, [b, n])).astype(np.int16),
        "audio_hint": np.abs(rng.normal(0, 0.02, [b, config.model.embed_dim])).astype(np.float16),
        "visual_hint": visual_hint,
    }


# The synthetic teachers and ImageNet stand-in of `trained_run`: a small fraction of their
# default training.
TRAINED_RUN_STAND_IN = {"steps": 200, "images": 2000}
TRAINED_RUN_TEACHERS = {
    "visual_steps": 100,
    "visual_images": 200,
    "audio_steps": 20,
    "audio_clips": 96,
}


def trained_run_config(data_dir):
    """The synthetic config shrunk for the slow tier: 240 scenes, a 4×4 map (112² images),
    1 s of audio, 1/8-width nets started from a small ImageNet stand-in (also OG-AVC's
    object model), 75 steps with the synthetic teachers' hints at the paper's weights,
    and the object-guided variants on. It exercises the whole path (stand-in, teachers,
    hints, training, every evaluation variant, pictures) and finds lone objects more
    often than chance (test_localize); it is far from the demo's training (docs/layout.md,
    Tests: the slow tier)."""
    c = load_config("synthetic")
    c.data_dir = str(data_dir)
    c.dataset_kwargs.num_train = 240
    c.dataset_kwargs.num_test = 40
    c.dataset_kwargs.world_seed = 5
    c.image_size = 112
    c.resize_size = 123
    c.audio_seconds = 1.0
    c.model.width = 0.125
    # test_localize's bounds hold in float32; bfloat16's round-off moves this 75-step run.
    c.model.dtype = "float32"
    c.model.embed_dim = 2048  # The teachers' audio embedding size.
    c.batch_size = 32
    c.num_epochs = 10
    c.learning_rate = 1e-3
    c.lr_schedule = "constant"  # What test_localize's thresholds were measured with.
    c.shuffle_buffer = 240
    c.log_every_steps = 7
    c.checkpoint_every_steps = 100_000
    c.eval_every_epochs = 1000
    c.eval_batch_size = 40
    c.teachers = ("synthetic",)
    c.alpha_audio = 1000.0
    c.alpha_visual = 100_000.0
    c.init_visual_npz = "synthetic"
    c.og_detr_teacher = "synthetic"
    c.save_maps = True  # test_score re-scores them.
    return c
