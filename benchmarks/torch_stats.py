"""PyTorch baseline for key statistics and sampling: context models (the layers before the
rewritten convolution) for ProGAN (official `ProgressiveGenerator` layout) and StyleGAN2 (the
official sequential model, keys = the modulated input of `dconv`), the same functions run to
the image (layer None), and the uncentred second moment C = E[k kᵀ] over the keys, as the
official code collects it (no_grad batches, k kᵀ summed).

torch is optional for the project, as in `torch_official.py`. The model comes from a
jaxrewrite model file (HWIO kernels, turned into OIHW here), so both sides read the very
same weights, and `check` compares the two C matrices before anything is timed.
"""

import math
import time

import numpy as np

import record
from jaxrewrite import xla
from jaxrewrite.zdataset import z_dataset


def proggan_context(params, layer, device="cpu"):
    """(torch function z [N, z_dim] -> keys [N, C, H, W]) for the input of `layerN.conv`, or
    the image [N, 3, H, W] for layer None."""
    import torch
    import torch.nn.functional as F

    names = sorted((k for k in params if k.startswith("layer")), key=lambda k: int(k[5:]))
    names += [k for k in params if k.startswith("output_")]
    stop = len(names) + 1 if layer is None else int(layer.split(".")[0][5:])
    blocks = []
    for i, name in enumerate(names[:stop], start=1):
        p = params[name]
        kernel = np.asarray(p["conv"]["kernel"])
        k, cin = kernel.shape[0], kernel.shape[2]
        weight = torch.as_tensor(kernel.transpose(3, 2, 0, 1).copy(), device=device)
        bias = torch.as_tensor(np.array(p["wscale"]["bias"]), device=device)
        gain = 1.0 if name.startswith("output_") else math.sqrt(2) / k
        blocks.append((weight, bias, gain / math.sqrt(cin), k - 1 if i == 1 else k // 2,
                       i >= 3 and i % 2 == 1 and not name.startswith("output_")))

    def run(z, numbers):
        x = z[:, :, None, None]
        for i, (weight, bias, scale, pad, up) in enumerate(blocks, start=1):
            x = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)  # pixel norm
            if up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i == stop:
                return x
            x = F.conv2d(x, weight, padding=pad) * scale + bias[None, :, None, None]
            x = x.clamp(-1, 1) if i == len(names) else F.leaky_relu(x, 0.2)
        return x

    return run


def _upfirdn(x, fir, up, lo, hi):
    """Zero insertion, padding and a true convolution with `fir` per channel (`ops.upfirdn2d`)."""
    import torch.nn.functional as F

    if up > 1:
        n, c, h, w = x.shape
        inserted = x.new_zeros((n, c, h * up, w * up))
        inserted[:, :, ::up, ::up] = x
        x = inserted
    taps = fir.flip(0, 1)[None, None].expand(x.shape[1], 1, -1, -1)
    return F.conv2d(F.pad(x, (lo, hi, lo, hi)), taps, groups=x.shape[1])


def stylegan2_context(params, layer, noise_batch=10, lr_mlp=0.01, device="cpu"):
    """(torch function (z, image numbers) -> keys [N, C, H, W]) for the input of
    `layerN.*.mconv.dconv`, or the image [N, 3, H, W] for layer None, with the official noise
    emulation (row `number % noise_batch` of RandomState(0) noise, tabled once here where the
    official code redraws it every call)."""
    import torch
    import torch.nn.functional as F

    from jaxrewrite.models.stylegan2 import official_noise_table

    t = lambda a: torch.as_tensor(np.array(a, np.float32), device=device)
    mapping = []
    for i in range(1, len(params["style"]) + 1):
        p = params["style"][str(i)]
        mapping.append((t(p["kernel"]) * (lr_mlp / math.sqrt(p["kernel"].shape[0])), t(p["bias"]) * lr_mlp))
    const = t(params["input"]["input"]).permute(0, 3, 1, 2)
    n_conv = sum(1 for k in params if k.startswith("layer"))
    stop = n_conv + 2 if layer is None else int(layer.split(".")[0][5:])
    convs = []
    for m in range(2, min(stop, n_conv + 1) + 1):
        p = params[f"layer{m}"]["conv" if m == 2 else "sconv"]
        kernel = np.asarray(p["mconv"]["dconv"]["kernel"])
        mod = p["mconv"]["modulation"]
        convs.append({"upsample": m >= 3 and m % 2 == 1, "kernel": t(kernel),
                      "mod": (t(mod["kernel"]) / math.sqrt(mod["kernel"].shape[0]), t(mod["bias"])),
                      "fir": t(p["mconv"]["blur"]["kernel"]) if "blur" in p["mconv"] else None,
                      "strength": t(p["noise"]["strength"]), "bias": t(p["activate"]["bias"]), "rgb": None})
        if m % 2 == 0:  # to_rgb{m/2} follows, its skip input upsampled by up_rgb{m/2 - 1}
            r = params[f"to_rgb{m // 2}"]["rgb"]
            rmod, kernel = r["conv"]["modulation"], np.asarray(r["conv"]["kernel"])[0, 0]
            up = params.get(f"up_rgb{m // 2 - 1}", {}).get("kernel")
            convs[-1]["rgb"] = {"mod": (t(rmod["kernel"]) / math.sqrt(rmod["kernel"].shape[0]), t(rmod["bias"])),
                                "kernel": t(kernel / math.sqrt(kernel.shape[0])), "bias": t(r["bias"]).reshape(1, -1, 1, 1),
                                "up": None if up is None else t(up)}
    noise = {}

    def noise_rows(numbers, h, w):
        if (h, w) not in noise:
            noise[h, w] = t(official_noise_table(noise_batch, h, w)).permute(0, 3, 1, 2)
        return noise[h, w][numbers % noise_batch]

    def run(z, numbers):
        latent = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for weight, bias in mapping:
            latent = F.leaky_relu(latent @ weight + bias, 0.2) * math.sqrt(2)
        x, image = const.expand(z.shape[0], -1, -1, -1), None
        for c in convs:
            style = latent @ c["mod"][0] + c["mod"][1]
            x = x * style[:, :, None, None]
            if layer is not None and c is convs[-1]:
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
                p = c["fir"].shape[0] - 2 - (k - 1)
                x = _upfirdn(x, c["fir"], 1, (p + 1) // 2 + 1, p // 2 + 1)
            x = x + c["strength"] * noise_rows(numbers, x.shape[2], x.shape[3])
            x = F.leaky_relu(x + c["bias"][None, :, None, None], 0.2) * math.sqrt(2)
            if layer is None and c["rgb"] is not None:
                r = c["rgb"]
                rgb = torch.einsum("nchw,nc,co->nohw", x, latent @ r["mod"][0] + r["mod"][1], r["kernel"]) + r["bias"]
                if image is not None:
                    p = r["up"].shape[0] - 2
                    rgb = rgb + _upfirdn(image, r["up"], 2, (p + 1) // 2 + 1, p // 2)
                image = rgb
        return image

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


def measure(name, model, layer, n, batch_size=50, device="cpu"):
    """Images/s of the torch statistics loop (one warm-up batch first, then the best of up to 3
    runs, as `bench_stats.measure`)."""
    context = context_for(model, layer, device)
    z_dim = model.generator().z_dim
    second_moment(context, z_dim, batch_size, batch_size, device=device)
    sync = record.torch_sync(device)
    sync()
    seconds, _ = record.best_seconds(lambda: (second_moment(context, z_dim, n, batch_size, device=device), sync()))
    return {"model": name, "layer": layer, "n": n, "device": device, "seconds": seconds, "images_per_s": n / seconds}


def check(model, layer, n=100):
    """Relative max difference between the torch C and jaxrewrite's C on the same weights."""
    from jaxrewrite.rewrite import stats

    gen = model.generator(**model.official_options(10))
    ours = stats.second_moment(gen, model.params, layer, n, batch_size=50)
    theirs = second_moment(context_for(model, layer), gen.z_dim, n)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def _z(model, n):
    import torch

    from jaxrewrite.zdataset import z_for

    return torch.as_tensor(z_for(range(n), model.generator().z_dim, 0))


def sampling(model, batch=32, seconds=5.0, device="cpu"):
    """Images/s of the torch generator (no_grad, one warm-up batch first), as `run.sampling`."""
    import torch

    generator, z = context_for(model, None, device), _z(model, batch).to(device)
    numbers = torch.arange(batch, device=device)
    sync = record.torch_sync(device)
    with torch.no_grad():
        generator(z, numbers)
        sync()
        t, done = time.perf_counter(), 0
        while done == 0 or time.perf_counter() - t < seconds:
            generator(z, numbers)
            done += batch
        sync()
    return done / (time.perf_counter() - t)


def image_check(model, n=4):
    """Relative max difference between torch's images and jaxrewrite's (same noise rows)."""
    import torch

    gen = model.generator(**model.official_options(10))
    z = _z(model, n)
    ours = np.asarray(xla.jit(lambda p, z: gen(p, z, image_numbers=np.arange(n)))(model.params, z.numpy()))
    with torch.no_grad():
        theirs = context_for(model, None)(z, torch.arange(n)).permute(0, 2, 3, 1).numpy()
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())
