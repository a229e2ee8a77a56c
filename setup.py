"""avkd-jax: Acoustic and Visual Knowledge Distillation for audio-visual localization, in JAX."""

from setuptools import find_packages, setup

setup(
    name="avkd_jax",
    version="0.1.0",
    description="JAX/Flax reimplementation of AVKD (ICMI 2023): sound source localization "
    "with contrastive learning and teacher hints.",
    python_requires=">=3.10",
    packages=find_packages(include=["avkd_jax", "avkd_jax.*", "teachers", "teachers.*"]),
    package_data={"avkd_jax.cpu_kernels": ["csrc/*.cc"]},
    install_requires=[
        "jax>=0.10,<0.11",
        "flax>=0.12,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12,<0.13",
        # The -cpu wheel is enough for tf.data; GPU users keep JAX on the GPU and TF off it.
        "tensorflow-cpu>=2.21,<2.22",
        "tensorflow-datasets>=4.9.10,<4.10",
        "librosa>=0.11,<0.12",
        "soundfile>=0.13",
        # Raw videos (video/<id>.mp4) of the real datasets; its wheels carry ffmpeg.
        "av>=14,<19",
        "ml-collections>=1.1,<2",
        "absl-py>=2.1",
        "clu>=0.0.12",
        "tensorboard>=2.21,<2.22",
        "numpy>=2.0,<2.5",
        "scipy>=1.14",
        "pillow>=11",
        "tqdm>=4.66",
        # Evaluation pictures and localize's overlays (Agg canvas only, no display).
        "matplotlib>=3.8",
        # tensorflow-datasets imports it without declaring it.
        "importlib_resources>=6",
    ],
    extras_require={
        # oneDNN for the students' convolutions on the CPU (avkd_jax/cpu_kernels/onednn.py;
        # the library and its headers, compiled against on first use). The last wheels with
        # the OpenMP runtime alone: later ones need Intel's SYCL and TBB runtimes. Without
        # them model.conv_impl="auto" keeps XLA's convolution.
        "cpu": [
            'onednn-cpu-gomp==2023.2.0; sys_platform == "linux" and platform_machine == "x86_64"',
            'onednn-devel-cpu-gomp==2023.2.0; sys_platform == "linux" and platform_machine == "x86_64"',
        ],
        # The PyTorch side (teachers/): never imported by avkd_jax. Pin torch: an unpinned
        # torch pulls a multi-GB CUDA build.
        "teachers": [
            "torch==2.13.0",
            "transformers>=5.0,<6",
            "panns-inference==0.1.1",
            "torchlibrosa>=0.1,<0.2",
            "matplotlib>=3.8",
        ],
        # torch is the independent reference in parity tests (CPU wheel; pinned).
        # nbclient + ipykernel execute notebooks/colab_evaluation.ipynb headless.
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "torch==2.13.0",
            "nbclient>=0.10,<0.12",
            "nbformat>=5.9",
            "ipykernel>=6.29",
            # tests/test_serve.py drives Debian's chromium-driver (no driver download).
            "selenium>=4.20,<5",
            # Starlette's TestClient (tests/test_serve.py).
            "httpx>=0.27",
        ],
        # python -m avkd_jax.serve: the local upload page.
        "serve": [
            "starlette>=0.40",
            "uvicorn>=0.30",
            "python-multipart>=0.0.18",
        ],
    },
)
