"""Defaults shared by every config in `configs/`: the paper's hyper-parameters."""

import ml_collections


def _runtime(c: ml_collections.ConfigDict) -> None:
    """The seed and the XLA flags."""
    c.seed = 0
    # Appended to $XLA_FLAGS by `python -m avkd_jax.main` before JAX starts its backends
    # (a flag already in $XLA_FLAGS wins); the GPU backend ignores it. YNNPACK for dots
    # and reductions only: its default list also takes the convolutions, whose weight
    # gradients XLA's own kernels run faster.
    c.xla_flags = "--xla_cpu_experimental_ynn_fusion_type=dot,reduce"


def _data(c: ml_collections.ConfigDict) -> None:
    """Which dataset, where its files are, the sets evaluated, and how clips become batches."""
    # Data. `dataset` names a TFDS builder in avkd_jax.datasets; `data_dir` is where its
    # TFRecord shards live and `manual_dir` where the raw files are (real datasets).
    c.dataset = ""
    c.dataset_kwargs = ml_collections.ConfigDict()
    c.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.manual_dir = ml_collections.FieldReference(None, field_type=str)
    # Real data (docs/data.md, Layouts): the test clips may live apart from the train clips
    # (EZ-VSL's test_data_path); list files named without a folder (dataset_kwargs.
    # train_list / test_list / vggss_json) are looked up in metadata_dir.
    # None: manual_dir, <manual_dir>/metadata and <test root>/Annotations (Flickr XML).
    c.test_manual_dir = ml_collections.FieldReference(None, field_type=str)
    c.metadata_dir = ml_collections.FieldReference(None, field_type=str)
    c.annotation_dir = ml_collections.FieldReference(None, field_type=str)
    # Test ids (of the own test list and of every eval set's) are left out of the train
    # split, and training refuses a train split that shares clips with an eval set.
    c.allow_test_overlap = False
    c.prepare_workers = 0  # Threads decoding raw clips when a dataset is built; 0: per CPU.
    c.train_split = "train"
    c.eval_split = "test"
    c.eval_format = (
        "flickr"  # Ground-truth map rule of docs/design.md, Evaluation: 'flickr' or 'vggss'.
    )
    # Sets to evaluate on: 'flickr_test', 'vggss_test', 'synthetic_test'; empty: the
    # dataset's own test set. A set of another dataset needs its raw root here.
    c.eval_sets = ()
    c.eval_manual_dirs = ml_collections.ConfigDict(
        {
            "flickr_test": ml_collections.FieldReference(None, field_type=str),
            "vggss_test": ml_collections.FieldReference(None, field_type=str),
        }
    )
    c.image_size = 224
    c.resize_size = 246  # Train: shorter side to 246, random crop 224 (LVS / EZ-VSL).
    c.sample_rate = 22050
    c.audio_seconds = 3.0
    c.shuffle_buffer = 10_000
    c.prefetch_batches = 2
    # Input streams the train shards are dealt to; the global batch is theirs side by side
    # (input_pipeline). None: one per process. Fix it (to a multiple of every process count
    # you will use) to get the same batches on 1 process × 4 GPUs as on 2 × 2.
    c.input_groups = ml_collections.FieldReference(None, field_type=int)


def _model(c: ml_collections.ConfigDict) -> None:
    """The two students."""
    c.model = ml_collections.ConfigDict()
    c.model.width = 1.0  # Channel multiplier of both ResNet18s (1.0 = the paper's).
    c.model.embed_dim = 2048
    # Compute dtype of the students (parameters, BatchNorm statistics, Adam and the losses
    # stay float32). bfloat16: faster on CPUs with bfloat16 dot products and on GPUs, and
    # the synthetic demo's results do not drop. 'float32': the authors' arithmetic
    # (`--mode=import` always evaluates their weights in float32).
    c.model.dtype = "bfloat16"
    # "auto": the CPU kernels (avkd_jax/cpu_kernels: oneDNN convolutions, hand-written
    # gradients) on one CPU device, XLA's own ops elsewhere; "xla": XLA's own always.
    # Not part of the checkpoint: the weights are the same either way.
    c.model.conv_impl = "auto"
    # The visual student's initialisation (docs/design.md, Model and losses): torchvision's ImageNet ResNet18
    # converted by `python -m teachers.convert_resnet` (None: random, unlike the paper);
    # 'synthetic': the synthetic world's stand-in, trained on first use.
    c.init_visual_npz = ml_collections.FieldReference(None, field_type=str)


def _loss(c: ml_collections.ConfigDict) -> None:
    """The contrastive and hint losses and the teachers that feed them."""
    # Loss: L = α1·L_S + α2·L_a + α3·L_v (paper §3.4).
    c.tau = 0.03
    c.alpha_contrastive = 1.0
    c.alpha_audio = 1000.0
    c.alpha_visual = 100_000.0
    # Hint shards to read, by teacher name (`python -m teachers.extract --teacher=NAME`):
    # the first that provides `audio_hint` feeds α2, the first with `visual_hint` α3. A
    # weight of 0 turns its teacher off. `detr_backbone` instead of `detr` trains on the
    # paper-text variant (the DETR backbone's feature map against every element of the
    # student's map).
    c.teachers = ("panns", "detr")
    c.hints_dir = ml_collections.FieldReference(None, field_type=str)  # None: beside the data.


def _training(c: ml_collections.ConfigDict) -> None:
    """Batch, schedule, logging and checkpoints."""
    c.batch_size = 128  # Global batch: contrastive negatives come from all devices.
    c.num_epochs = 100
    c.learning_rate = 1e-4
    # 'constant' (the paper's) or 'cosine': decayed to 0 by the last step of num_epochs.
    c.lr_schedule = "constant"

    c.log_every_steps = 50
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    c.eval_every_epochs = 10  # And after the last epoch; 0: never (--mode=eval later).
    c.eval_batch_size = 64
    # Evaluation protocols (avkd_jax/eval/registry.py), their summary keys in this order:
    # 'lvs' cIoU / AUC, 'peaks' the models' peak histogram, 'synthetic' peak on the
    # sounding object and audio swap (scenes that list their objects only).
    c.evals = ("lvs", "peaks", "synthetic")
    # Also write <workdir>/maps/<set>.npz: the student's S/τ per test id, the file
    # `python -m avkd_jax.score` reads (docs/protocols/).
    c.save_maps = False
    # VGG-SS sets: each clip's first annotated box only (the paper authors' choice);
    # False: every box (LVS / EZ-VSL).
    c.eval_first_box_only = False


def _object_guided(c: ml_collections.ConfigDict) -> None:
    """The object-guided variants and the pictures."""
    # Object-guided inference (paper §3.5, docs/design.md, Evaluation). OG-AVC fuses the student's map with
    # the object map of an ImageNet ResNet18 (a `teachers.convert_resnet` .npz, any width;
    # by default the file the visual student started from; None: the OG variants are
    # skipped, with a note): (1 − og_alpha)·AVC + og_alpha·object. OG-AVC-DETR adds the
    # `visual_hint` map of teacher `og_detr_teacher` for the test split: (AVC + object +
    # DETR) / 3. Empty: skipped.
    c.object_npz = c.get_ref("init_visual_npz").identity()  # Follows it unless set.
    c.og_alpha = 0.4
    # 'paper': (1 − α)·AVC + α·object (§3.5's text); 'authors': normalise(AVC + α·object), their VGG-SS code's.
    c.og_fusion = "paper"
    c.og_detr_teacher = "detr"
    # Test ids whose maps every evaluation draws in <workdir>/pictures/ (empty: the first 4).
    c.picture_ids = ()


def base_config() -> ml_collections.ConfigDict:
    """The paper's setup (§3.6): 224² images, 3 s at 22,050 Hz, batch 128, Adam 1e-4."""
    c = ml_collections.ConfigDict()
    for section in (_runtime, _data, _model, _loss, _training, _object_guided):
        section(c)
    return c
