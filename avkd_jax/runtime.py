"""How `avkd_jax.main`'s process starts JAX: the XLA flags, and how it joins a
multi-process job (docs/scaling_out.md: the arguments of `jax.distributed.initialize` from the
flags and the environment). Nothing here imports JAX."""

import os

from absl.app import UsageError

_EXPLICIT = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


def initialize_kwargs(flag_values, environ) -> dict | None:
    """The arguments of `jax.distributed.initialize` for this run; None for one process.

    Args:
      flag_values: the parsed flags (`distributed`, `coordinator_address`, `num_processes`,
        `process_id`, `local_device_ids`).
      environ: the environment (`os.environ`).
    Raises:
      UsageError: some but not all of the three explicit settings, outside a cluster.
    """
    if flag_values.distributed == "no":
        return None
    kwargs = {}
    for name, variable in _EXPLICIT.items():
        value = getattr(flag_values, name)
        if value is None and environ.get(variable):
            value = environ[variable] if name == "coordinator_address" else int(environ[variable])
        if value is not None:
            kwargs[name] = value
    if flag_values.local_device_ids:
        kwargs["local_device_ids"] = [int(i) for i in flag_values.local_device_ids]
    if flag_values.distributed == "yes" or _launched_by_cluster(environ):
        return kwargs  # JAX fills in what is missing from the cluster's environment.
    if not kwargs:
        return None
    missing = [f"--{name} (or ${var})" for name, var in _EXPLICIT.items() if name not in kwargs]
    if missing:
        raise UsageError(
            f"Several processes need {', '.join(missing)} as well, or run under srun / "
            "mpirun, or --distributed=yes where JAX detects the cluster itself."
        )
    return kwargs


def _launched_by_cluster(environ) -> bool:
    """srun or mpirun started this process as one task of several."""
    for variable in ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"):
        if int(environ.get(variable) or 1) > 1:
            return True
    return False


def with_xla_flags(current: str, wanted: str) -> str:
    """`current` ($XLA_FLAGS) plus each flag of `wanted` whose name it does not set."""
    names = {f.split("=", 1)[0] for f in current.split()}
    extra = [f for f in wanted.split() if f.split("=", 1)[0] not in names]
    return " ".join([*current.split(), *extra])


def add_xla_flags(wanted: str, environ=os.environ) -> None:
    """Sets $XLA_FLAGS to `with_xla_flags` of it and `wanted`. XLA reads them when JAX first
    touches a device, so this must run before that."""
    environ["XLA_FLAGS"] = with_xla_flags(environ.get("XLA_FLAGS", ""), wanted)
