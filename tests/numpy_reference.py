"""Independent float64 numpy forwards, NCHW, straight from PyTorch state dicts.

They follow the original (non-sequential) formulations -- rosinality's fused modulated
convolution, the ProGAN blocks, the DCGAN tutorial -- so they check the JAX generators
without sharing any code with them. The golden tests validate them on the golden configs;
other tests then use them for sizes and widths the golden data does not cover.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SQRT2 = np.sqrt(2.0)


def conv2d(x, w, pad):
    """x [N, I, H, W], w [O, I, k, k]: cross-correlation with zero padding."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # N I H W k k
    return np.einsum("nihwyx,oiyx->nohw", win, w)


def conv_transpose2d(x, w, stride, pad):
    """x [N, I, H, W], w [I, O, k, k] (PyTorch ConvTranspose2d layout): scatter-add."""
    n, _, h, wd = x.shape
    k = w.shape[2]
    out = np.zeros((n, w.shape[1], (h - 1) * stride + k, (wd - 1) * stride + k))
    for y in range(k):
        for xx in range(k):
            out[:, :, y:y + (h - 1) * stride + 1:stride, xx:xx + (wd - 1) * stride + 1:stride] += np.einsum(
                "nihw,io->nohw", x, w[:, :, y, xx])
    return out[:, :, pad:out.shape[2] - pad, pad:out.shape[3] - pad]


def upfirdn2d(x, kernel, up, pad):
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (0, 0), pad, pad))
    k = kernel[::-1, ::-1]
    win = sliding_window_view(u, k.shape, axis=(2, 3))
    return np.einsum("nchwyx,yx->nchw", win, k)


def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)


def stylegan2(sd, z, noise_rows, noise_table_rows, lr_mlp=0.01):
    """rosinality `Generator` with the official sequential model's noise (RandomState(0) rows)."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    x = np.asarray(z, np.float64)
    x = x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        w = sd[f"style.{i}.weight"]
        x = lrelu(x @ (w * lr_mlp / np.sqrt(w.shape[1])).T + sd[f"style.{i}.bias"] * lr_mlp) * SQRT2
        i += 1
    w_lat = x

    def modconv(h, prefix, upsample=False, demodulate=True):
        wm = sd[f"{prefix}.modulation.weight"]
        s = w_lat @ (wm / np.sqrt(wm.shape[1])).T + sd[f"{prefix}.modulation.bias"]
        weight = sd[f"{prefix}.weight"][0]
        o, ci, k, _ = weight.shape
        wmod = weight[None] / np.sqrt(ci * k * k) * s[:, None, :, None, None]
        if demodulate:
            wmod = wmod / np.sqrt(np.sum(wmod ** 2, axis=(2, 3, 4)) + 1e-8)[:, :, None, None, None]
        outs = []
        for n in range(h.shape[0]):
            if upsample:
                y = conv_transpose2d(h[n:n + 1], wmod[n].transpose(1, 0, 2, 3), 2, 0)
                y = upfirdn2d(y, sd[f"{prefix}.blur.kernel"], 1, (1, 1))
            else:
                y = conv2d(h[n:n + 1], wmod[n], k // 2)
            outs.append(y)
        return np.concatenate(outs)

    def styled(h, name, upsample=False):
        h = modconv(h, f"{name}.conv", upsample)
        _, _, hh, ww = h.shape
        table = np.random.RandomState(0).randn(noise_table_rows, hh * ww).astype(np.float32)
        noise = table[noise_rows].reshape(-1, 1, hh, ww)
        h = h + sd[f"{name}.noise.weight"] * noise
        return lrelu(h + sd[f"{name}.activate.bias"][None, :, None, None]) * SQRT2

    h = np.repeat(sd["input.input"], x.shape[0], axis=0)
    h = styled(h, "conv1")
    skip = modconv(h, "to_rgb1.conv", demodulate=False) + sd["to_rgb1.bias"]
    j = 0
    while f"convs.{2 * j}.conv.weight" in sd:
        h = styled(h, f"convs.{2 * j}", upsample=True)
        h = styled(h, f"convs.{2 * j + 1}")
        rgb = modconv(h, f"to_rgbs.{j}.conv", demodulate=False) + sd[f"to_rgbs.{j}.bias"]
        skip = rgb + upfirdn2d(skip, sd[f"to_rgbs.{j}.upsample.kernel"], 2, (2, 1))
        j += 1
    return skip


def proggan(sd, z):
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    x = np.asarray(z, np.float64).reshape(len(z), -1, 1, 1)
    n = 1
    while f"layer{n}.conv.weight" in sd:
        w = sd[f"layer{n}.conv.weight"]
        x = x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)
        if n >= 3 and n % 2 == 1:
            x = x.repeat(2, axis=2).repeat(2, axis=3)
        x = conv2d(x, w, 3 if n == 1 else 1)
        x = lrelu(x * (np.sqrt(2) / w.shape[2] / np.sqrt(w.shape[1])) + sd[f"layer{n}.wscale.b"][None, :, None, None])
        n += 1
    out = next(k[:-len(".conv.weight")] for k in sd if k.startswith("output_") and k.endswith(".conv.weight"))
    w = sd[f"{out}.conv.weight"]
    x = x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)
    x = conv2d(x, w, 0) / np.sqrt(w.shape[1]) + sd[f"{out}.wscale.b"][None, :, None, None]
    return np.clip(x, -1, 1)


def dcgan(sd, z, strides, paddings, eps=1e-5):
    """Tutorial DCGAN with BatchNorm in eval mode."""
    x = np.asarray(z, np.float64).reshape(len(z), -1, 1, 1)
    convs = sorted(int(k.split(".")[1]) for k in sd if k.endswith(".weight") and np.ndim(sd[k]) == 4)
    for j, i in enumerate(convs):
        x = conv_transpose2d(x, np.asarray(sd[f"main.{i}.weight"], np.float64), strides[j], paddings[j])
        if f"main.{i + 1}.running_mean" in sd:
            p = {k: np.asarray(sd[f"main.{i + 1}.{k}"], np.float64)[None, :, None, None]
                 for k in ("weight", "bias", "running_mean", "running_var")}
            x = (x - p["running_mean"]) / np.sqrt(p["running_var"] + eps) * p["weight"] + p["bias"]
        x = np.maximum(x, 0) if j < len(convs) - 1 else np.tanh(x)
    return x
