"""PyTorch baseline for key statistics: context models (the layers before the rewritten
convolution) for ProGAN (official `ProgressiveGenerator` layout) and StyleGAN2 (the official
sequential model, keys = the modulated input of `dconv`), and the uncentred second moment
C = E[k kᵀ] over their keys, as the official code collects it (no_grad batches, k kᵀ summed).

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

    def run(z, numbers):
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


def stylegan2_context(params, layer, noise_batch=10, lr_mlp=0.01, device="cpu"):
    """(torch function (z, image numbers) -> keys [N, C, H, W]) for the input of
    `layerN.*.mconv.dconv`, with the official noise emulation (row `number % noise_batch` of
    RandomState(0) noise, tabled once here where the official code redraws it every call)."""
    import torch
    import torch.nn.functional as F

    from jaxrewrite.models.stylegan2 import official_noise_table

    t = lambda a: torch.as_tensor(np.array(a, np.float32), device=device)
    mapping = []
    for i in range(1, len(params["style"]) + 1):
        p = params["style"][str(i)]
        mapping.append((t(p["kernel"]) * (lr_mlp / math.sqrt(p["kernel"].shape[0])), t(p["bias"]) * lr_mlp))
    const = t(params["input"]["input"]).permute(0, 3, 1, 2)
    stop = int(layer.split(".")[0][5:])
    convs = []
    for m in range(2, stop + 1):
        p = params[f"layer{m}"]["conv" if m == 2 else "sconv"]
        kernel = np.asarray(p["mconv"]["dconv"]["kernel"])
        mod = p["mconv"]["modulation"]
        convs.append({"upsample": m >= 3 and m % 2 == 1, "kernel": t(kernel),
                      "mod": (t(mod["kernel"]) / math.sqrt(mod["kernel"].shape[0]), t(mod["bias"])),
                      "fir": t(p["mconv"]["blur"]["kernel"]) if "blur" in p["mconv"] else None,
                      "strength": t(p["noise"]["strength"]), "bias": t(p["activate"]["bias"])})
    noise = {}

    def noise_rows(numbers, h, w):
        if (h, w) not in noise:
            noise[h, w] = t(official_noise_table(noise_batch, h, w)).permute(0, 3, 1, 2)
        return noise[h, w][numbers % noise_batch]

    def run(z, numbers):
        latent = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for weight, bias in mapping:
            latent = F.leaky_relu(latent @ weight + bias, 0.2) * math.sqrt(2)
        x = const.expand(z.shape[0], -1, -1, -1)
        for c in convs:
            style = latent @ c["mod"][0] + c["mod"][1]
            x = x * style[:, :, None, None]
            if c is convs[-1]:
                return x
            kernel = c["kernel"]
            k, cin = kernel.shape[0], kernel.shape[2]
            scaled = kernel / math.sqrt(cin * k * k)
            if c["upsample"]:
                x = F.conv_transpose2d(x, scaled.permute(2, 3, 0, 1), stride=2)
            else:
                x = F.conv2d(x, scaled.permute(3, 2, 0, 1), padding=k // 2)
            demod = torch.rsqrt(style.pow(2) @ (kernel.pow(2).sum((0, 1)) / (cin * k * k)) + 1e-8)
            x = x * demod[:, :, None, None]
            if c["upsample"]:
                fir = c["fir"]
                p = fir.shape[0] - 2 - (k - 1)
                lo, hi = (p + 1) // 2 + 1, p // 2 + 1
                taps = fir.flip(0, 1)[None, None].expand(x.shape[1], 1, -1, -1)
                x = F.conv2d(F.pad(x, (lo, hi, lo, hi)), taps, groups=x.shape[1])
            x = x + c["strength"] * noise_rows(numbers, x.shape[2], x.shape[3])
            x = F.leaky_relu(x + c["bias"][None, :, None, None], 0.2) * math.sqrt(2)
        return x

    return run


def context_for(model, layer, device="cpu"):
    if model.arch == "proggan":
        return proggan_context(model.params, layer, device)
    if model.arch == "stylegan2":
        return stylegan2_context(model.params, layer, device=device)
    raise ValueError(f"no torch context model for {model.arch}")


def second_moment(context, z_dim, n, batch_size=50, seed=1, device="cpu"):
    """C [c, c] float64 over image numbers 0..n-1 of `seed`, batch by batch."""
    import torch

    zs = z_dataset(n, z_dim, seed)
    total, count = None, 0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            numbers = torch.arange(start, min(start + batch_size, n), device=device)
            keys = context(torch.as_tensor(zs[start:start + batch_size], device=device), numbers)
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
    context = context_for(model, layer, device)
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

    gen = model.generator(**({"noise": "official", "noise_batch": 10} if model.arch == "stylegan2" else {}))
    ours = stats.second_moment(gen, model.params, layer, n, batch_size=50)
    theirs = second_moment(context_for(model, layer), gen.z_dim, n)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())
