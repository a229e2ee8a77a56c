#!/usr/bin/env bash
# The GPU check (docs/gpu_check.md): finds the GPU, installs, runs benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh                  # venv $VENV (default .venv-gpu)
#   bash benchmarks/gpu_check.sh --skip_install   # $PYTHON (default python3) as it is
#
# Other flags go to gpu_check.py. $NVIDIA_SMI: the nvidia-smi to ask; $JAX_CUDA_EXTRA:
# cuda12 or cuda13 instead of the driver's pick. Exit codes: 0 parity and tests passed,
# 1 one failed, 2 bad usage, 3 no NVIDIA GPU (nothing installed or measured), 4 install failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

skip_install=0
args=()
for arg in "$@"; do
  if [[ $arg == --skip_install ]]; then skip_install=1; else args+=("$arg"); fi
done
host_python=${PYTHON:-python3}

# Standard library only: a machine without a GPU is told so before anything is installed.
"$host_python" benchmarks/gpu_check.py --detect || exit $?

if ((skip_install)); then
  python=$host_python
else
  venv=${VENV:-.venv-gpu}
  python=$venv/bin/python
  [[ -x $python ]] || "$host_python" -m venv "$venv" || exit 4
  "$python" -m pip install -q -e '.[test]' || exit 4
  # The CUDA plugin of the jax just installed, for what the driver supports.
  requirement=$("$python" benchmarks/gpu_check.py --cuda_requirement) || exit $?
  echo "gpu_check: pip install $requirement" >&2
  "$python" -m pip install -q "$requirement" || exit 4
fi
exec "$python" benchmarks/gpu_check.py ${args[@]+"${args[@]}"}
