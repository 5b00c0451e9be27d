"""Array ops shared by the generators: NHWC activations, HWIO kernels, plain `lax` convolutions."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")
# Convolutions run as XLA convolutions, except while tracing inside `patch_gemm()`: there
# one of at most `limit` patch elements runs as patches @ kernel. That pays only where the
# input is the same on every call, as in a rewrite's optimisation loop: under `scan` the
# patches of the goal input are hoisted out and each iteration is one GEMM. Elsewhere XLA's
# convolution is faster (measured on 2 CPU cores, batches 1-32, 4x4 to 64x64 maps: 1.6-20x).
_patch_limit = 0


@contextlib.contextmanager
def patch_gemm(limit=1 << 22):
    """Trace convolutions whose input stays fixed as one GEMM on precomputed patches (the
    patches are k*k times the input: worth it only where they are computed once)."""
    global _patch_limit
    saved, _patch_limit = _patch_limit, limit
    try:
        yield
    finally:
        _patch_limit = saved


@struct.dataclass
class LowRank:
    """A kernel W = W0 + Λ D kept factored: W0 [kh, kw, in, out], Λ [kh, kw, r, out], D [r, in].

    The rewrite's Λ update passes one to the target instead of a dense kernel. Convolutions are
    linear in the kernel and contract its input axis with the input's channels, so
    conv(x, W) = conv(x, W0) + conv(x Dᵀ, Λ): the first term is fixed through an optimisation
    (hoisted out of its loop), the second has r input channels instead of `in`. What the
    generators do to a kernel besides convolving it (scale it, slice or sum its taps, take its
    shape, demodulate it) acts on W0 and Λ alike or has its own form here."""

    w0: jax.Array
    lam: jax.Array
    d: jax.Array

    @property
    def shape(self):
        return self.w0.shape

    @property
    def size(self):
        return self.w0.size

    @property
    def dtype(self):
        return self.w0.dtype

    def taps(self, fn):
        """`fn` (an op on the tap and output axes, never the input axis) on W0 and on Λ."""
        return LowRank(fn(self.w0), fn(self.lam), self.d)

    def __getitem__(self, index):  # slices of the taps (a transposed convolution's phases)
        return self.taps(lambda k: k[index])

    def __truediv__(self, c):
        return LowRank(self.w0 / c, self.lam / c, self.d)

    def dense(self):
        return self.w0 + jnp.einsum("...ro,ri->...io", self.lam, self.d)

    # Anything else (a target of one's own that squares or sums its kernel) sees the dense
    # kernel: right, at the dense cost.
    def __jax_array__(self):
        return self.dense()

    def _dense_op(op):
        return lambda self, *other: op(self.dense(), *other)

    __pow__ = _dense_op(lambda a, b: a ** b)
    __mul__ = __rmul__ = _dense_op(lambda a, b: a * b)
    __add__ = __radd__ = _dense_op(lambda a, b: a + b)
    __sub__ = _dense_op(lambda a, b: a - b)
    __rsub__ = _dense_op(lambda a, b: b - a)
    __neg__ = _dense_op(lambda a: -a)
    __matmul__ = _dense_op(lambda a, b: a @ b)
    del _dense_op


def taps(kernel, fn):
    """`fn` on a kernel's taps (dense or factored)."""
    return kernel.taps(fn) if isinstance(kernel, LowRank) else fn(kernel)


def pixel_sums(x):
    """Per-sample sums over the pixels: [n, ..., c] -> [n, c], as batched dots with ones.

    XLA:CPU runs this sum as a reduction over the middle axes at 1/6 of a GEMV's speed
    (256x512: 140 against 24 us), and it is what the edits' losses and StyleGAN2's
    demodulation gradient sum every step. The dot keeps its canonical operand order under
    `vmap` too (a vmapped axis joins the samples, with ones of its own, `_gemv_sums`): a dot
    with unbatched ones would have XLA transpose x first (0.5 ms a step for two 512-channel
    edits)."""
    return _pixel_sums(x.shape[1:-1], x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _pixel_sums(pixels, x):
    return _gemv_sums(x)


def _pixel_sums_fwd(pixels, x):
    return _gemv_sums(x), None


def _pixel_sums_bwd(pixels, _, g):
    n, c = g.shape
    return (jnp.broadcast_to(g.reshape((n,) + (1,) * len(pixels) + (c,)), (n,) + pixels + (c,)),)


_pixel_sums.defvjp(_pixel_sums_fwd, _pixel_sums_bwd)


@jax.custom_batching.custom_vmap
def _gemv_sums(x):
    n, c = x.shape[0], x.shape[-1]
    return jnp.einsum("np,npc->nc", jnp.ones((n, x.size // (n * c)), x.dtype), x.reshape(n, -1, c))


@_gemv_sums.def_vmap
def _gemv_sums_vmap(axis_size, in_batched, x):
    out = _gemv_sums(x.reshape((-1,) + x.shape[2:]))
    return out.reshape(x.shape[:2] + out.shape[1:]), True


def total(x):
    """The sum of all elements, the pixels summed by `pixel_sums`."""
    return jnp.sum(pixel_sums(x))


@jax.custom_vjp
def scale_channels(x, s):
    """x [n, h, w, c] * s [n, c] at every pixel; the gradient in s sums pixels by `pixel_sums`."""
    return x * s[:, None, None, :]


def _scale_channels_fwd(x, s):
    return scale_channels(x, s), (x, s)


def _scale_channels_bwd(res, g):
    x, s = res
    return g * s[:, None, None, :], _gemv_sums(g * x)


scale_channels.defvjp(_scale_channels_fwd, _scale_channels_bwd)


def tap_squares(kernel):
    """sum over taps of kernel[y, x, i, o]²: [in, out]. A dot with ones: XLA's CPU reduction over
    the two leading axes took 10 ms for a 3x3x512x512 kernel (forward and gradient 1.7 ms as a
    dot)."""
    k, _, cin, cout = kernel.shape
    return (jnp.ones(k * k, kernel.dtype) @ jnp.square(kernel).reshape(k * k, cin * cout)).reshape(cin, cout)


def squared_norms(kernel, weights):
    """sum over taps and input channels i of W[y, x, i, o]² weights[n, i], [n, out], for a
    factored W = W0 + Λ D: a quadratic form in Λ whose coefficients depend on W0, D and the
    weights only, sum W0² w + 2 Σ Λ (Σ_i W0 Dᵀ w) + Σ Λ (D w Dᵀ) Λ, at about r/in of the cost
    of the dense sum once the coefficients are computed (outside the optimisation's loop)."""
    w0, lam, d = kernel.w0, kernel.lam, kernel.d
    cross = jnp.einsum("yxio,ri,ni->nyxro", w0, d, weights)  # Σ_i W0 Dᵀ w: fixed
    gram = jnp.einsum("ri,qi,ni->nrq", d, d, weights)  # D w Dᵀ: fixed
    # one elementwise product and sum (einsums sharing the output axis would be batched
    # dots, 512 tiny GEMMs a step on a CPU)
    spread = jnp.einsum("nrq,yxqo->nyxro", gram, lam)
    return weights @ tap_squares(w0) + jnp.sum(lam * (2 * cross + spread), axis=(1, 2, 3))


def _correlate(x, kernel, padding):
    if isinstance(kernel, LowRank):
        return _correlate(x, kernel.w0, padding) + _correlate(x @ kernel.d.T, kernel.lam, padding)
    pads = [(padding, padding)] * 2 if isinstance(padding, int) else padding
    k = kernel.shape[:2]
    n, h, w, c = x.shape
    out_h = h + sum(pads[0]) - k[0] + 1
    out_w = w + sum(pads[1]) - k[1] + 1
    (top, _), (left, _) = pads
    if h == w == 1 and 0 <= top - out_h + 1 and top < k[0] and 0 <= left - out_w + 1 and left < k[1]:
        # A single input pixel (a z map) meets one kernel tap per output pixel: a matmul,
        # 6x faster than XLA's CPU convolution at 50x1x1x128 -> 4x4x64.
        taps = kernel[top - out_h + 1:top + 1, left - out_w + 1:left + 1][::-1, ::-1]
        return jnp.einsum("nc,yxco->nyxo", x[:, 0, 0], taps)
    if n * out_h * out_w * c * k[0] * k[1] <= _patch_limit:
        return _patch_gemm(pads, x, kernel)
    return _lax_conv(pads, x, kernel)


def _lax_conv(pads, x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=_DN)


def _patch_gemm(pads, x, kernel):
    """patches [n, h, w, (ky, kx, c)] @ kernel [(ky, kx, c), o]: the patches are slices of the
    padded input (cheap wherever the compiler leaves them), in the HWIO kernel's own order."""
    kh, kw = kernel.shape[:2]
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)])
    oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    patches = jnp.concatenate([xp[:, i:i + oh, j:j + ow] for i in range(kh) for j in range(kw)], axis=-1)
    p = patches.reshape(-1, patches.shape[-1])
    # the kernel's gradient needs pᵀ @ dy; XLA would fold a plain transpose into the dot
    # (a transposed-operand GEMM, 1.3-2.5x slower on CPU), the barrier keeps it a stored copy
    out = _fixed_input_gemm(p, lax.optimization_barrier(p.T), kernel.reshape(-1, kernel.shape[-1]))
    return out.reshape(patches.shape[:-1] + (kernel.shape[-1],))


@jax.custom_vjp
def _fixed_input_gemm(p, p_t, k):
    return p @ k


def _fixed_input_gemm_fwd(p, p_t, k):
    return p @ k, (p_t, k)


def _fixed_input_gemm_bwd(res, g):
    p_t, k = res
    return g @ k.T, jnp.zeros_like(p_t), p_t @ g


_fixed_input_gemm.defvjp(_fixed_input_gemm_fwd, _fixed_input_gemm_bwd)


def conv(x, kernel, padding):
    """Cross-correlation with symmetric zero padding, as `torch.nn.functional.conv2d`."""
    return _correlate(x, kernel, padding)


def conv_transpose(x, kernel, stride, padding):
    """`torch.nn.functional.conv_transpose2d` for a kernel stored HWIO in forward-conv orientation.

    Before cropping `padding`, output pixel o sums x[i] * kernel[t] over stride * i + t = o, so
    the pixels of one phase (o mod stride, per axis) meet only that phase's taps: stride²
    small correlations of the input, interleaved. A correlation of the zero-dilated input does
    the same sums with stride² - 1 zero products in every stride² (up to 2x slower on CPU at
    the benchmarked generators' shapes, `benchmarks/bench_ops.py`). The phases are stacked
    into place (one copy XLA fuses); zero-interleaving pads summed instead cost XLA:CPU a
    separate pass each.
    """
    s = stride
    kh, kw, _, o = kernel.shape
    n, h, w, _ = x.shape
    full_h, full_w = (h - 1) * s + kh, (w - 1) * s + kw
    mh, mw = -(-full_h // s), -(-full_w // s)  # pixels per phase, the last ones padded
    grid = []
    for a in range(s):
        row = []
        for b in range(s):
            taps = kernel[a::s][::-1, b::s][:, ::-1]  # correlation order
            if taps.size:
                y = _correlate(x, taps, [(taps.shape[0] - 1,) * 2, (taps.shape[1] - 1,) * 2])
                y = jnp.pad(y, ((0, 0), (0, mh - y.shape[1]), (0, mw - y.shape[2]), (0, 0)))
            else:  # a kernel smaller than the stride leaves this phase empty
                y = jnp.zeros((n, mh, mw, o), x.dtype)
            row.append(y)
        grid.append(row)
    return _interleave(grid)[:, padding:full_h - padding, padding:full_w - padding]


def upsample_conv(x, kernel, padding, factor=2):
    """`conv(nearest_upsample(x, factor), kernel, padding)` computed at x's resolution, for a
    size-keeping padding (2 * padding = kernel size - 1).

    Output pixel factor * i + a reads upsampled pixels that are copies of x's pixels i + d for
    a few offsets d, so each phase a (per axis) is a small correlation of x with the kernel's
    taps summed by offset: 2x2 instead of 3x3 taps per output pixel for a 3x3 kernel
    (1.5-2.1x faster on CPU at ProGAN's shapes, `benchmarks/bench_ops.py`).
    """
    if any(2 * padding != k - 1 for k in kernel.shape[:2]):
        raise ValueError(f"upsample_conv keeps the size: padding {padding} for a {kernel.shape[:2]} kernel")
    phases = [[], []]  # per axis: (first offset, [offsets, taps] 0/1 matrix) for each phase
    for axis, k in enumerate(kernel.shape[:2]):
        for a in range(factor):
            offsets = [(a + t - padding) // factor for t in range(k)]
            first = min(offsets)
            m = np.zeros((max(offsets) - first + 1, k), np.float32)
            m[np.array(offsets) - first, np.arange(k)] = 1
            phases[axis].append((first, m))
    grid = []
    for da, ma in phases[0]:
        row = []
        for db, mb in phases[1]:
            summed = taps(kernel, lambda k: jnp.einsum("ry,sx,yxio->rsio", ma, mb, k))
            pads = [(-da, da + len(ma) - 1), (-db, db + len(mb) - 1)]
            row.append(_correlate(x, summed, pads))
        grid.append(row)
    return _interleave(grid)


def _interleave(grid):
    """grid[a][b] [n, h, w, c] -> [n, h * s, w * s, c] with pixel (s * i + a, s * j + b) =
    grid[a][b][:, i, j] (one stacking copy, which XLA fuses)."""
    s = len(grid)
    n, h, w, c = grid[0][0].shape
    return jnp.stack([jnp.stack(row, axis=3) for row in grid], axis=2).reshape(n, h * s, w * s, c)


def upfirdn2d(x, kernel, up=1, pad=(0, 0)):
    """Zero-insertion upsampling, padding and true convolution with a 2-D FIR kernel per channel.

    Same as the `upfirdn2d` op of the StyleGAN2 port (down=1), with `pad = (pad0, pad1)` on both
    axes. Written as a sum of shifted slices, which XLA fuses into one pass: on CPU that is
    20-40x faster than a depthwise convolution (feature_group_count = channels).
    """
    cfg = [(0, 0, 0)] + [(pad[0], pad[1] + up - 1, up - 1)] * 2 + [(0, 0, 0)]
    xp = lax.pad(x, jnp.zeros((), x.dtype), cfg)  # interior padding = zero insertion
    kh, kw = kernel.shape
    oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    k = kernel[::-1, ::-1].astype(x.dtype)
    return sum(k[i, j] * xp[:, i:i + oh, j:j + ow] for i in range(kh) for j in range(kw))


def pixel_norm(x, axis=-1):
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + 1e-8)


def leaky_relu(x, slope=0.2):
    return jnp.where(x >= 0, x, x * slope)


def fused_leaky_relu(x, bias):
    """StyleGAN2's fused bias + LeakyReLU(0.2), scaled by sqrt(2) to keep unit gain."""
    return leaky_relu(x + bias) * jnp.sqrt(2.0).astype(x.dtype)


def nearest_upsample(x, factor=2):
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)
