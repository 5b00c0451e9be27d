"""PyTorch eager port of the official rewriting `insert` loop (davidbau/rewriting), as a speed baseline.

Mirrors `ProgressiveGanRewriter.insert` / `linear_insert` of `rewrite/ganrewrite.py` with the
notebook options (`low_rank_insert=True`) on the rewritten layer alone: Adam on the whole weight,
L1 loss, projection onto the key rows every `piter` steps (see shared/docs/METHOD.md section 7).
torch is optional for the project: it is imported only when a function below needs it. A *case*
is a dict of numpy arrays describing one insert problem (`golden_case`, `synthetic_case`).
"""
import math
import time
from pathlib import Path

import numpy as np

import record

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"


def _torch():
    import torch
    return torch


def golden_case(arch, run="edit_zca"):
    """The insert problem of a golden run (`arch` 'stylegan2' or 'proggan', `run` e.g. 'erase_zca')."""
    d = np.load(GOLDEN / arch / f"{run}.npz")
    case = dict(arch=arch, weight=d["weight_before"], key=d["key"])
    if arch == "proggan":
        return dict(case, goal_in=d["goal_in"], goal_out=d["goal_out"])
    w = np.load(GOLDEN / arch / "weights_seq.npz")
    return dict(case, goal_in=d["goal_in_fmap"], goal_out=d["goal_out_fmap"], style=d["goal_in_style"],
                noise_strength=w["layer6.sconv.noise.weight"], bias=w["layer6.sconv.activate.bias"])


def synthetic_case(channels=512, crop=16, rank=1, seed=0):
    """A random non-upsampling 3x3 StyleGAN2 layer (in = out = `channels`) on a `crop` x `crop` goal.

    Pure numpy (no torch), so other benchmarks can build the very same problem.
    """
    rng = np.random.RandomState(seed)
    f32 = lambda a: np.asarray(a, np.float32)
    style = f32(1 + 0.1 * rng.randn(1, channels))
    key = np.linalg.qr(rng.randn(channels, rank))[0].T
    return dict(arch="stylegan2", weight=f32(rng.randn(1, channels, channels, 3, 3)), key=f32(key),
                goal_in=f32(rng.randn(1, channels, crop, crop) * style[:, :, None, None]),
                goal_out=f32(rng.randn(1, channels, crop, crop)), style=style,
                noise_strength=f32(0.3 * rng.randn(1)), bias=f32(0.1 * rng.randn(channels)))


def towns64_case(layer="layer8", edit="spire2tree"):
    """The shipped towns64 edit at its layer (a plain ProGAN conv, 32 -> 32 channels), its goal
    and rank-1 key made by jaxrewrite (statistics over 1000 images, cached)."""
    from jaxrewrite import modelfile, zoo
    from jaxrewrite.rewrite import artifacts
    from jaxrewrite.rewrite.editfile import read_edit
    from jaxrewrite.rewrite.rewriter import Rewriter
    from jaxrewrite.tree import get

    model = modelfile.load(zoo.resolve("towns64"))
    rw = Rewriter(model, layer, cache_dir=zoo.cache_dir())
    request = read_edit(zoo.shipped_edit("towns64", edit))
    goal = rw.copy_paste_goal(request)
    weight = artifacts.torch_layout(model, rw.weight_path, get(model.params, rw.weight_path))
    return dict(arch="proggan", weight=weight, key=rw.key(request.key, 1), goal_in=artifacts.nchw(goal.goal_in["fmap"]),
                goal_out=artifacts.nchw(goal.goal_out["fmap"]))


CASES = {"stylegan2": lambda: golden_case("stylegan2"), "proggan": lambda: golden_case("proggan"),
         "towns64": towns64_case, "stylegan2_512": lambda: synthetic_case(512, 16)}


def stylegan2_target(style, noise_strength, bias):
    """`layerN.sconv` from `dconv` to `activate` (non-upsampling) as a function of (weight, fmap).

    As the official code, the noise is drawn afresh on every call from RandomState(0) at the
    input's size and copied to the input's device.
    """
    torch = _torch()
    F = torch.nn.functional

    def target(weight, fmap):
        batch, cin, h, w = fmap.shape
        k = weight.shape[-1]
        scale = 1 / math.sqrt(cin * k * k)
        out = F.conv2d(fmap, scale * weight.squeeze(0), padding=k // 2)
        demod = torch.rsqrt((scale * weight * style.view(batch, 1, cin, 1, 1)).pow(2).sum([2, 3, 4]) + 1e-8)
        out = out * demod[:, :, None, None]
        noise = np.random.RandomState(0).randn(batch, h * w).astype("float32")
        out = out + noise_strength * torch.from_numpy(noise).to(fmap.device).view(batch, 1, h, w)
        return F.leaky_relu(out + bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)
    return target


def proggan_target(weight, x):
    """`layerN.conv` of ProGAN: the bare 3x3 convolution, padding 1, no bias."""
    return _torch().nn.functional.conv2d(x, weight, padding=1)


def projected_conv(weight, direction):
    """Projection of the input-channel axis of a conv weight onto the rows of `direction`."""
    torch = _torch()
    cosine = torch.einsum("...oiyx,di->...odyx", weight, direction)
    return torch.einsum("...odyx,di->...oiyx", cosine, direction)


def to_torch(case, device="cpu"):
    """(target function, weight, goal_in, goal_out, key) of a case as torch tensors on `device`."""
    torch = _torch()
    t = lambda name: torch.as_tensor(np.asarray(case[name], np.float32), device=device)
    target = (stylegan2_target(t("style"), t("noise_strength"), t("bias")) if case["arch"] == "stylegan2"
              else proggan_target)
    return target, t("weight"), t("goal_in"), t("goal_out"), t("key")


def insert(target, weight, goal_in, goal_out, key, niter=2001, piter=10, lr=0.05):
    """Official `insert` (low_rank_insert): returns (edited weight, per-iteration losses)."""
    torch = _torch()
    weight = torch.nn.Parameter(weight.clone())
    with torch.no_grad():
        ortho_weight = weight - projected_conv(weight, key)
    optimizer = torch.optim.Adam([weight], lr=lr)
    losses = []
    for it in range(niter):
        loss = torch.nn.functional.l1_loss(goal_out, target(weight, goal_in))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if it % piter == 0 or it == niter - 1:
            with torch.no_grad():
                weight[...] = ortho_weight + projected_conv(weight, key)
    return weight.detach(), np.array(losses, np.float32)


def linear_insert(target, weight, goal_in, goal_out, key, niter=2001, lr=0.05):
    """Official `linear_insert`: Adam on Lambda with W = W0 + Lambda D; returns (weight, losses)."""
    torch = _torch()
    shape = list(weight.shape)
    shape[-3] = key.shape[0]
    lam = torch.zeros(shape, device=weight.device, requires_grad=True)
    edited = lambda: weight + torch.einsum("...odyx,di->...oiyx", lam, key)
    optimizer = torch.optim.Adam([lam], lr=lr)
    losses = []
    for _ in range(niter):
        loss = torch.nn.functional.l1_loss(goal_out, target(edited(), goal_in))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        return edited(), np.array(losses, np.float32)


def time_torch_insert(arch_case, niter, device="cpu", threads=None, piter=10, lr=0.05, warmup=3):
    """Wall time per iteration of the official loop on a case (dict or a `CASES` name) after
    `warmup` iterations; `threads` sets torch.set_num_threads."""
    torch = _torch()
    if threads is not None:
        torch.set_num_threads(threads)
    case = CASES[arch_case]() if isinstance(arch_case, str) else arch_case
    args = to_torch(case, device)
    sync = record.torch_sync(device)
    if warmup:
        insert(*args, niter=warmup, piter=piter, lr=lr)
    sync()
    start = time.perf_counter()
    insert(*args, niter=niter, piter=piter, lr=lr)
    sync()
    return {"seconds_per_iter": (time.perf_counter() - start) / niter}
