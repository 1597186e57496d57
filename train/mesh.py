"""Multi-host initialisation, the device mesh and the shardings of the train step.

Multi-host launch uses three environment variables (the names JAX itself reads):

  JAX_COORDINATOR_ADDRESS  host:port of process 0's coordinator (e.g. ``10.0.0.1:1234``)
  JAX_NUM_PROCESSES        number of processes in the job
  JAX_PROCESS_ID           this process's id in [0, JAX_NUM_PROCESSES)

Optionally ``JAX_LOCAL_DEVICE_IDS`` (comma separated) restricts the devices of this process. When
``JAX_COORDINATOR_ADDRESS`` is set, :func:`maybe_initialize_distributed` calls
``jax.distributed.initialize`` (and on CPU selects the gloo collectives so the processes form one job).
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "JAX_LOCAL_DEVICE_IDS"

DATA_AXIS = "data"


def maybe_initialize_distributed(environ=None) -> bool:
    """Calls ``jax.distributed.initialize`` when the multi-host environment is set.

    Must run before any other JAX call. Returns True when it initialised a multi-process job.

    Raises:
      ValueError: naming the variable when the environment is incomplete or malformed.
    """
    env = os.environ if environ is None else environ
    address = env.get(ENV_COORDINATOR)
    if not address:
        return False
    missing = [k for k in (ENV_NUM_PROCESSES, ENV_PROCESS_ID) if not env.get(k)]
    if missing:
        raise ValueError(
            f"{ENV_COORDINATOR}={address!r} is set but {', '.join(missing)} is not; multi-host runs need "
            f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID}."
        )
    try:
        num_processes = int(env[ENV_NUM_PROCESSES])
        process_id = int(env[ENV_PROCESS_ID])
    except ValueError as e:
        raise ValueError(f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} must be integers: {e}") from None
    if not 0 <= process_id < num_processes:
        raise ValueError(f"{ENV_PROCESS_ID}={process_id} must be in [0, {ENV_NUM_PROCESSES}={num_processes}).")
    local_ids = env.get(ENV_LOCAL_DEVICE_IDS)
    local_device_ids = [int(i) for i in local_ids.split(",")] if local_ids else None
    # Only the CPU client reads this; on CPU it lets several processes run collectives together.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        cluster_detection_method="deactivate",
    )
    return True


def make_mesh(shape: Sequence[int] = (-1,), axes: Sequence[str] = (DATA_AXIS,)) -> jax.sharding.Mesh:
    """A mesh over all devices (all processes) with Auto axis types.

    Args:
      shape: mesh shape; one entry may be -1 (filled with the remaining devices).
      axes: axis names, the first must be ``"data"``; further axes (e.g. ``"model"``) are left for
        model/FSDP sharding and currently hold replicated parameters.
    """
    shape = tuple(int(s) for s in shape)
    axes = tuple(axes)
    if len(shape) != len(axes):
        raise ValueError(f"mesh.shape {shape} and mesh.axes {axes} must have the same length.")
    if not axes or axes[0] != DATA_AXIS:
        raise ValueError(f"mesh.axes must start with {DATA_AXIS!r}, got {axes}.")
    n = jax.device_count()
    if shape.count(-1) > 1:
        raise ValueError(f"mesh.shape {shape} may contain at most one -1.")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if n % known:
            raise ValueError(f"mesh.shape {shape}: {n} devices are not divisible by {known}.")
        shape = tuple(n // known if s == -1 else s for s in shape)
    if math.prod(shape) != n:
        raise ValueError(f"mesh.shape {shape} needs {math.prod(shape)} devices, {n} are available.")
    return jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes))


def data_size(mesh: jax.sharding.Mesh) -> int:
    return mesh.shape[DATA_AXIS]


def batch_sharding(mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``; the rest replicated."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(mesh, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Assembles this process's slice of the global batch into global arrays sharded over ``data``."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def to_host(x) -> np.ndarray:
    """A replicated (possibly multi-process) array as numpy."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def process_rows(mesh, global_batch_size: int) -> np.ndarray:
    """Rows of the global batch that live on this process's devices, in increasing order.

    Each process loads exactly these samples, so the global batch is the same whatever the
    process/device layout (1 process × 4 devices or 2 processes × 2 devices).
    """
    if global_batch_size % data_size(mesh):
        raise ValueError(
            f"train.batch_size={global_batch_size} must be divisible by the data-axis size {data_size(mesh)}."
        )
    index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
    rows = set()
    for index in index_map.values():
        rows.update(range(*index[0].indices(global_batch_size)))
    return np.asarray(sorted(rows), dtype=np.int64)
