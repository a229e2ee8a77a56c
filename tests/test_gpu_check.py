"""benchmarks/gpu_check.{sh,py}: no GPU is found before anything is installed, the CUDA
plugin's pick from nvidia-smi, the parity check CPU against CPU and against a perturbed
gradient, and the table."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers.paths import REPO

spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

BANNER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
|   0  NVIDIA H200                    On  |   00000000:19:00.0 Off |                    0 |
"""


def fake_nvidia_smi(tmp_path, text="", code=0):
    """An executable that prints `text` and exits with `code`, as $NVIDIA_SMI."""
    path = tmp_path / "nvidia-smi"
    (tmp_path / "out.txt").write_text(text)
    path.write_text(
        f"#!/bin/sh\ncat '{tmp_path / 'out.txt'}'\necho 'driver gone' >&2\nexit {code}\n"
    )
    path.chmod(0o755)
    return str(path)


def run_wrapper(**env):
    """`bash benchmarks/gpu_check.sh` asking the nvidia-smi at $NVIDIA_SMI."""
    environ = dict(os.environ, PYTHON=sys.executable, **env)
    return subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_no_gpu_exits_3_before_installing_anything(tmp_path):
    out = run_wrapper(VENV=str(tmp_path / "venv"), NVIDIA_SMI=str(tmp_path / "nvidia-smi"))
    assert out.returncode == gpu_check.EXIT_NO_GPU == 3
    assert out.stderr.strip() == (
        "gpu_check: no NVIDIA GPU found (nvidia-smi: not found); nothing measured."
    )
    assert not (tmp_path / "venv").exists()


def test_a_failing_nvidia_smi_is_no_gpu(tmp_path):
    out = run_wrapper(NVIDIA_SMI=fake_nvidia_smi(tmp_path, code=9))
    assert out.returncode == 3
    assert "no NVIDIA GPU found (nvidia-smi: exit 9: driver gone)" in out.stderr


@pytest.mark.parametrize(
    "cuda, override, extra",
    [("12.8", None, "cuda12"), ("13.0", None, "cuda13"), ("13.1", "cuda12", "cuda12")],
)
def test_cuda_extra_from_the_drivers_cuda_version(tmp_path, cuda, override, extra):
    environ = {"NVIDIA_SMI": fake_nvidia_smi(tmp_path, BANNER.format(cuda=cuda))}
    if override:
        environ["JAX_CUDA_EXTRA"] = override
    assert gpu_check.detect_gpu(environ)["driver"] == "570.86.15"
    version = gpu_check.jax_pin()
    assert version.startswith("==0.10.")  # setup.py's pin, as installed.
    assert gpu_check.cuda_requirement(environ) == f"jax[{extra}]{version}"


def test_old_drivers_and_bad_overrides_are_refused():
    with pytest.raises(gpu_check.NoGpu, match="CUDA 11.8; JAX's plugins need 12"):
        gpu_check.cuda_extra((11, 8))
    with pytest.raises(ValueError, match="JAX_CUDA_EXTRA='cuda11'"):
        gpu_check.cuda_extra((12, 4), "cuda11")
    with pytest.raises(gpu_check.NoGpu, match="no 'Driver Version'"):
        gpu_check.parse_nvidia_smi("No devices were found")


def test_parity_cpu_against_cpu_passes():
    """The whole check on two CPU devices: the same step, the same numbers, exit 0."""
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--parity_only", "--devices=cpu:0,cpu:1"]
    out = subprocess.run(
        [*cmd, "--parity_size=tiny"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| parity cpu:1 vs cpu:0: loss |" in out.stdout
    assert "FAIL" not in out.stdout


def test_compare_flags_the_perturbed_leaf_and_passes_an_exact_match():
    rng = np.random.default_rng(0)
    grads = {"audio": {"conv": rng.normal(size=[3, 3, 4])}, "visual": {"bias": rng.normal(size=8)}}
    exact = gpu_check.compare(2.5, grads, 2.5, grads)
    assert exact["failures"] == [] and exact["global_rel"] == 0.0
    # 1e-2 relative on one leaf: that leaf fails; the other passes.
    noisy = {"audio": grads["audio"], "visual": {"bias": grads["visual"]["bias"] * 1.01}}
    result = gpu_check.compare(2.5, grads, 2.5 * (1 + 1e-5), noisy)
    assert result["worst_leaf"] == "['visual']['bias']"
    assert any(f.startswith("['visual']['bias']: 1.00e-02 > 0.001") for f in result["failures"])
    assert not any("audio" in f or f.startswith("loss") for f in result["failures"])
    assert gpu_check.compare(2.5, grads, 2.6, grads)["failures"] == ["loss: 4.00e-02 > 0.0001"]


def test_table():
    table = gpu_check.format_table([("parity: loss", "1 vs 1", "pass"), ("eval", "9", "maps/s")])
    assert table.splitlines() == [
        "| check | value | result |",
        "|---|---|---|",
        "| parity: loss | 1 vs 1 | pass |",
        "| eval | 9 | maps/s |",
    ]
