"""Name-and-layout rules between PyTorch state dicts and Flax parameter trees.

A rule pairs a state-dict key pattern with a tree path pattern and an exactly invertible
layout transform. Patterns use `{p}` (any dotted prefix) and `{n}` (an integer); a tree
pattern of None keeps the tensor aside, untouched, for export (e.g. BatchNorm's
`num_batches_tracked`, which no forward pass reads).
"""

import re

import numpy as np

from .torch_format import CheckpointError

# torch layout -> tree layout, and back. Pure transposes/reshapes: round trips are bit-exact.
TRANSFORMS = {
    "same": (lambda a: a, lambda a: a),
    "linear": (lambda a: a.T, lambda a: a.T),  # [out, in] <-> [in, out]
    "conv": (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)),  # OIHW <-> HWIO
    "mconv": (lambda a: a[0].transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)[None]),  # 1OIHW <-> HWIO
    "conv_t": (lambda a: a.transpose(2, 3, 0, 1), lambda a: a.transpose(2, 3, 0, 1)),  # IOHW <-> HWIO
    "nchw": (lambda a: a.transpose(0, 2, 3, 1), lambda a: a.transpose(0, 3, 1, 2)),  # NCHW <-> NHWC
    "chw": (lambda a: a.transpose(1, 2, 0)[None], lambda a: a[0].transpose(2, 0, 1)),  # CHW <-> 1HWC
    "hw": (lambda a: a[None, :, :, None], lambda a: a[0, :, :, 0]),  # HW <-> 1HW1
    "scalar": (lambda a: a.reshape(1), lambda a: a.reshape(())),  # () <-> (1,)
    "rgb_bias": (lambda a: a.reshape(1, 1, 1, -1), lambda a: a.reshape(-1)),  # (3,) <-> (1, 1, 1, 3)
    # NVIDIA's normalised FIR filter <-> the filter with the upsampling gain 4 folded in
    # (exact: a power of two)
    "fir_up2": (lambda a: a * 4, lambda a: a / 4),
}

# the rank each layout transform takes ("same": any), checked before a tensor's shape is read
RANKS = {"linear": 2, "conv": 4, "mconv": 5, "conv_t": 4, "nchw": 4, "chw": 3, "hw": 2, "scalar": 0, "rgb_bias": 1,
         "fir_up2": 2}

class MissingKey(CheckpointError):
    """A key a layout's `spec` needs and the state dict lacks, by its canonical name; `convert`
    reports it under the checkpoint's own name."""

    def __init__(self, name, why=""):
        super().__init__(f"missing key {name!r}{why}")
        self.name, self.why = name, why


_PLACEHOLDERS = {"p": r"(?P<p>.+?)", "n": r"(?P<n>\d+)"}


def _compile(pattern):
    parts = re.split(r"(\{[pn]\})", pattern)
    return re.compile("".join(_PLACEHOLDERS[x[1]] if x in ("{p}", "{n}") else re.escape(x) for x in parts))


class Rules:
    def __init__(self, rules):
        self.rules = [(_compile(t), t, None if p is None else _compile(p), p, f) for t, p, f in rules]

    def to_tree(self, key):
        """(tree path or None, transform name) for a state-dict key, or None if no rule matches."""
        for rx, _, _, path, transform in self.rules:
            m = rx.fullmatch(key)
            if m:
                return (None if path is None else path.format(**m.groupdict())), transform
        return None

    def to_key(self, path):
        for _, key, rx, _, transform in self.rules:
            m = rx and rx.fullmatch(path)
            if m:
                return key.format(**m.groupdict()), transform
        raise KeyError(f"no state-dict name for tree path {path!r}")


def forward(transform, array):
    return np.asarray(TRANSFORMS[transform][0](np.asarray(array)), order="C")  # (ascontiguousarray makes 0-d 1-d)


def inverse(transform, array):
    return np.asarray(TRANSFORMS[transform][1](np.asarray(array)), order="C")


def numbered(sd, pattern):
    """`[sd[pattern % 1], sd[pattern % 2], ...]` up to the highest number present; a gap is a missing key."""
    rx = re.compile(re.escape(pattern).replace("%d", r"(\d+)"))
    last = max((int(m[1]) for k in sd if (m := rx.fullmatch(k))), default=0)
    for n in range(1, last + 1):
        if pattern % n not in sd:
            raise MissingKey(pattern % n)
    return [sd[pattern % n] for n in range(1, last + 1)]
