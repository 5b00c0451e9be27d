"""Data parallelism over every local device: one rule, the data axis is split.

Statistics split their image batch (axis 1 of a chunk of batches), batched edits their edit
axis; parameters (`replicate`) and everything else stay replicated. Under `jit`, XLA's SPMD
partitioner turns the sharded inputs into one program per device. On several hosts, call
`jax.distributed.initialize()` first: each host then feeds its own local devices
(`jax.local_devices()`), and statistics computed per host can be summed.
"""

import functools
import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def devices():
    return jax.local_devices()


@functools.cache
def _mesh():
    return Mesh(np.array(devices()), ("data",))


def along(axis=0):
    """Sharding that splits `axis` over all local devices."""
    return NamedSharding(_mesh(), PartitionSpec(*[None] * axis, "data"))


def replicate(tree):
    """The tree on every local device. Put parameters there once before a loop of jitted calls:
    host (numpy) arguments are copied to the device again on every call (the whole model per
    batch: 100 MB for a 256 px StyleGAN2)."""
    return jax.device_put(tree, NamedSharding(_mesh(), PartitionSpec()))


def round_up(n):
    """The smallest multiple of the device count >= n."""
    return math.ceil(n / len(devices())) * len(devices())


def split(*arrays, axis=0):
    """Put arrays on the devices, split along `axis` (its length must be a multiple of the count)."""
    sharding = along(axis)
    return [jax.device_put(a, sharding) for a in arrays]


def pad(x, n):
    """x with axis 0 padded to n by repeating its last row (valid inputs, discarded after)."""
    x = np.asarray(x)
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)]) if n > len(x) else x
