"""Data parallelism over every device: one rule, the data axis is split.

Statistics split their image batch (axis 1 of a chunk of batches), batched edits their edit
axis; parameters (`replicate`) and everything else stay replicated. Under `jit`, XLA's SPMD
partitioner turns the sharded inputs into one program per device: the edits need no
communication at all; the statistics' partial sums meet once per call (`summed`). On several
hosts (or processes), call `jax.distributed.initialize(...)` first and run the same script
in each: the mesh then spans every process's devices, every process computes the same host
inputs (z's are drawn from a seed) and hands its own devices their slices, the partial sums
meet in XLA's collectives, and `to_host` gives every process the whole result.
"""

import functools
import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def devices():
    return jax.devices()


@functools.cache
def _mesh():
    return Mesh(np.array(devices()), ("data",))


def summed(fn, axis):
    """fn(params, *data) run by each device on its slices of the data (split along `axis`,
    params whole), the results summed over the devices in one all-reduce. Under plain `jit`
    the partitioner puts that all-reduce at every sum over the split axis: once per batch
    inside a scan of batches, a synchronisation of every device (and host) per batch."""
    def local(params, *data):
        return jax.tree.map(lambda x: jax.lax.psum(x, "data"), fn(params, *data))

    def run(params, *data):
        return jax.shard_map(local, mesh=_mesh(), in_specs=(PartitionSpec(),) + (along(axis).spec,) * len(data),
                             out_specs=PartitionSpec(), check_vma=False)(params, *data)

    return run


def along(axis=0):
    """Sharding that splits `axis` over all devices."""
    return NamedSharding(_mesh(), PartitionSpec(*[None] * axis, "data"))


def _put(tree, sharding):
    """`tree` (the same values in every process) laid out by `sharding`."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def local(x):  # each process supplies the slices its own devices hold
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(local, tree)


def replicate(tree):
    """The tree on every device. Put parameters there once before a loop of jitted calls:
    host (numpy) arguments are copied to the device again on every call (the whole model per
    batch: 100 MB for a 256 px StyleGAN2)."""
    return _put(tree, NamedSharding(_mesh(), PartitionSpec()))


def round_up(n):
    """The smallest multiple of the device count >= n."""
    return math.ceil(n / len(devices())) * len(devices())


def split(*arrays, axis=0):
    """Put arrays on the devices, split along `axis` (its length must be a multiple of the count)."""
    sharding = along(axis)
    return [_put(a, sharding) for a in arrays]


def to_host(x):
    """The whole array as numpy in every process (gathered where other processes hold parts)."""
    if jax.process_count() == 1:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def pad(x, n):
    """x with axis 0 padded to n by repeating its last row (valid inputs, discarded after)."""
    x = np.asarray(x)
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)]) if n > len(x) else x
