"""Data parallelism: a 1-D 'data' mesh over every device of every process.

Batches are split along their leading axis; parameters, optimizer states and the EMA are
replicated. Each process feeds its own slice of the global batch (the grain loader shards by
`jax.process_index()`), assembled into one global array by `global_batch`.

Multi-host: `maybe_initialize_distributed` calls `jax.distributed.initialize` when
`JAX_COORDINATOR_ADDRESS` (with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`) is set, or under SLURM /
Open MPI with more than one task (JAX detects those itself). On CPU it selects the gloo
collectives; two CPU processes on localhost train together (tests/test_train_sharding.py).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_initialized = False


def maybe_initialize_distributed() -> bool:
    """Initializes the multi-process runtime when the environment asks for it; returns whether it did."""
    global _initialized
    if _initialized:
        return True
    multi = bool(os.environ.get("JAX_COORDINATOR_ADDRESS")) or any(
        int(os.environ.get(v, "1")) > 1 for v in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))
    if not multi:
        return False
    # CPU processes need gloo for cross-process collectives (GPU/TPU backends ignore this flag).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    else:
        jax.distributed.initialize()  # SLURM / Open MPI: JAX detects the cluster itself
    _initialized = True
    return True


def data_mesh(devices=None) -> Mesh:
    """1-D mesh named 'data' over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def replicate(tree, mesh: Mesh):
    """Places a pytree of (identical on every process) host/device arrays replicated on the mesh."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """This process's slice of the batch -> global arrays split along axis 0 over the mesh."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def barrier(name: str, timeout_s: int = 1800) -> None:
    """Waits for every process (no-op with one). Used before the first collective: on CPU the gloo
    context is created by it and gives up when processes arrive more than ~30 s apart (e.g. one is
    still building models), while the coordination service's barrier waits as long as asked."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    from sslsr import jax_private

    jax_private.wait_at_barrier(name, timeout_s)
    multihost_utils.sync_global_devices(name)
