"""PyTorch baseline for key statistics: a ProGAN context model (layers before the rewritten
convolution, official `ProgressiveGenerator` layout) and the uncentred second moment
C = E[k kᵀ] over its keys, as the official code collects it (no_grad batches, k kᵀ summed).

torch is optional for the project, as in `torch_official.py`. The model comes from a
jaxrewrite model file (HWIO kernels, turned into OIHW here), so both sides read the very
same weights, and `check` compares the two C matrices before anything is timed.
"""

import math
import time

import numpy as np

from jaxrewrite.zdataset import z_dataset


def proggan_context(params, layer, device="cpu"):
    """(torch function z [N, z_dim] -> keys [N, C, H, W]) for the input of `layerN.conv`."""
    import torch
    import torch.nn.functional as F

    stop = int(layer.split(".")[0][5:])
    blocks = []
    for i in range(1, stop + 1):
        p = params[f"layer{i}"]
        kernel = np.asarray(p["conv"]["kernel"])
        k, cin = kernel.shape[0], kernel.shape[2]
        weight = torch.as_tensor(kernel.transpose(3, 2, 0, 1).copy(), device=device)
        bias = torch.as_tensor(np.array(p["wscale"]["bias"]), device=device)
        blocks.append((weight, bias, math.sqrt(2) / k / math.sqrt(cin), k - 1 if i == 1 else k // 2,
                       i >= 3 and i % 2 == 1))

    def run(z):
        x = z[:, :, None, None]
        for i, (weight, bias, scale, pad, up) in enumerate(blocks, start=1):
            x = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)  # pixel norm
            if up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i == stop:
                return x
            x = F.leaky_relu(F.conv2d(x, weight, padding=pad) * scale + bias[None, :, None, None], 0.2)
        return x

    return run


def second_moment(context, z_dim, n, batch_size=50, seed=1, device="cpu"):
    """C [c, c] float64 over image numbers 0..n-1 of `seed`, batch by batch."""
    import torch

    zs = z_dataset(n, z_dim, seed)
    total, count = None, 0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            keys = context(torch.as_tensor(zs[start:start + batch_size], device=device))
            flat = keys.permute(0, 2, 3, 1).reshape(-1, keys.shape[1])
            s = (flat.T @ flat).double()
            total = s if total is None else total + s
            count += flat.shape[0]
    return (total / count).cpu().numpy()


def measure(name, model, layer, n, batch_size=50, device="cpu", threads=None):
    """Images/s of the torch statistics loop (one warm-up batch first)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    context = proggan_context(model.params, layer, device)
    z_dim = model.generator().z_dim
    second_moment(context, z_dim, batch_size, batch_size, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    second_moment(context, z_dim, n, batch_size, device=device)
    sync()
    seconds = time.perf_counter() - t
    return {"model": name, "layer": layer, "n": n, "device": device, "seconds": seconds, "images_per_s": n / seconds}


def check(model, layer, n=100):
    """Relative max difference between the torch C and jaxrewrite's C on the same weights."""
    from jaxrewrite.rewrite import stats

    gen = model.generator()
    ours = stats.second_moment(gen, model.params, layer, n, batch_size=50)
    theirs = second_moment(proggan_context(model.params, layer), gen.z_dim, n)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())
