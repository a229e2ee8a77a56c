"""The device mesh and the two shardings everything uses: replicated, and split on the batch.

One process per host; every device of every process is on one `data` axis (docs/design.md,
Scaling out). XLA inserts the collectives: no pmap, no hand-written all-gather.
"""

import jax
import numpy as np

P = jax.sharding.PartitionSpec


def create_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over every device of every process; the batch is split on `data`.

    Devices are ordered by process, so each process's rows of a global batch are one
    contiguous block (`input_pipeline.make_global`).
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return jax.sharding.Mesh(np.asarray(devices), ("data",))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Every device holds the whole array (parameters, optimiser state, metrics)."""
    return jax.sharding.NamedSharding(mesh, P())


def batch_sharded(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """The leading (batch) axis split over `data`."""
    return jax.sharding.NamedSharding(mesh, P("data"))
