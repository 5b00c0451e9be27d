"""Array ops shared by the generators: NHWC activations, HWIO kernels, plain `lax` convolutions."""

import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def conv(x, kernel, padding):
    """Cross-correlation with symmetric zero padding, as `torch.nn.functional.conv2d`."""
    return lax.conv_general_dilated(x, kernel, (1, 1), [(padding, padding)] * 2, dimension_numbers=_DN)


def conv_transpose(x, kernel, stride, padding):
    """`torch.nn.functional.conv_transpose2d` for a kernel stored HWIO in forward-conv orientation.

    A transposed convolution is a correlation of the zero-dilated input with the spatially
    flipped kernel, padded by `k - 1 - padding`.
    """
    k = kernel.shape[0]
    pad = k - 1 - padding
    return lax.conv_general_dilated(
        x, kernel[::-1, ::-1], (1, 1), [(pad, pad)] * 2, lhs_dilation=(stride, stride), dimension_numbers=_DN
    )


def upfirdn2d(x, kernel, up=1, pad=(0, 0)):
    """Zero-insertion upsampling, padding and true convolution with a 2-D FIR kernel per channel.

    Same as the `upfirdn2d` op of the StyleGAN2 port (down=1), with `pad = (pad0, pad1)` on both axes.
    """
    channels = x.shape[-1]
    k = jnp.broadcast_to(kernel[::-1, ::-1, None, None], kernel.shape + (1, channels)).astype(x.dtype)
    # lhs_dilation leaves no trailing zero after the last sample; upfirdn2d's upsampled map has one.
    padding = [(pad[0], pad[1] + up - 1)] * 2
    return lax.conv_general_dilated(
        x, k, (1, 1), padding, lhs_dilation=(up, up), dimension_numbers=_DN, feature_group_count=channels
    )


def pixel_norm(x, axis=-1):
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + 1e-8)


def leaky_relu(x, slope=0.2):
    return jnp.where(x >= 0, x, x * slope)


def fused_leaky_relu(x, bias):
    """StyleGAN2's fused bias + LeakyReLU(0.2), scaled by sqrt(2) to keep unit gain."""
    return leaky_relu(x + bias) * jnp.sqrt(2.0).astype(x.dtype)


def nearest_upsample(x, factor=2):
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)
