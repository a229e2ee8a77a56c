"""Defaults shared by every config in `configs/`: the paper's hyper-parameters."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """The paper's setup (§3.6): 224² images, 3 s at 22,050 Hz, batch 128, Adam 1e-4."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Data. `dataset` names a TFDS builder in avkd_jax.datasets; `data_dir` is where its
    # TFRecord shards live and `manual_dir` where the raw files are (real datasets).
    c.dataset = ""
    c.dataset_kwargs = ml_collections.ConfigDict()
    c.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.manual_dir = ml_collections.FieldReference(None, field_type=str)
    c.train_split = "train"
    c.eval_split = "test"
    c.eval_format = "flickr"  # Ground-truth map rule of DESIGN §4: 'flickr' or 'vggss'.
    c.image_size = 224
    c.resize_size = 246  # Train: shorter side to 246, random crop 224 (LVS / EZ-VSL).
    c.sample_rate = 22050
    c.audio_seconds = 3.0
    c.shuffle_buffer = 10_000
    c.prefetch_batches = 2

    c.model = ml_collections.ConfigDict()
    c.model.width = 1.0  # Channel multiplier of both ResNet18s (1.0 = the paper's).
    c.model.embed_dim = 2048
    c.model.dtype = "float32"
    c.init_visual_npz = ml_collections.FieldReference(None, field_type=str)

    # Loss: L = α1·L_S + α2·L_a + α3·L_v (paper §3.4).
    c.tau = 0.03
    c.alpha_contrastive = 1.0
    c.alpha_audio = 1000.0
    c.alpha_visual = 100_000.0
    c.teachers = ("panns", "detr")

    c.batch_size = 128  # Global batch: contrastive negatives come from all devices.
    c.num_epochs = 100
    c.learning_rate = 1e-4

    c.log_every_steps = 50
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    c.eval_every_epochs = 10
    c.eval_batch_size = 64
    return c
