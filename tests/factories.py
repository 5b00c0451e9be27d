"""Random PyTorch-layout state dicts (numpy) for architectures of any size, as test fixtures."""

import numpy as np


def _fir():
    k = np.array([1, 3, 3, 1], np.float32)
    k = np.outer(k, k)
    return k / k.sum()


def stylegan2(rng, size=64, style_dim=32, n_mlp=3, channels=None):
    """rosinality layout, with the constant-initialised tensors randomised so they matter."""
    log = int(np.log2(size))
    channels = channels or {2 ** r: max(8, 64 >> max(0, r - 3)) for r in range(2, log + 1)}
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    sd = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"], sd[f"style.{i}.bias"] = f(style_dim, style_dim) * 100, f(style_dim)
    sd["input.input"] = f(1, channels[4], 4, 4)

    def styled(name, cin, cout, blur):
        sd[f"{name}.conv.weight"] = f(1, cout, cin, 3, 3)
        sd[f"{name}.conv.modulation.weight"] = f(cin, style_dim)
        sd[f"{name}.conv.modulation.bias"] = 1 + 0.1 * f(cin)
        if blur:
            sd[f"{name}.conv.blur.kernel"] = _fir() * 4
        sd[f"{name}.noise.weight"] = 0.3 * f(1)
        sd[f"{name}.activate.bias"] = 0.1 * f(cout)

    def rgb(name, cin):
        sd[f"{name}.conv.weight"] = f(1, 3, cin, 1, 1)
        sd[f"{name}.conv.modulation.weight"] = f(cin, style_dim)
        sd[f"{name}.conv.modulation.bias"] = 1 + 0.1 * f(cin)
        sd[f"{name}.bias"] = 0.1 * f(1, 3, 1, 1)

    styled("conv1", channels[4], channels[4], False)
    rgb("to_rgb1", channels[4])
    cin = channels[4]
    for j, r in enumerate(range(3, log + 1)):
        cout = channels[2 ** r]
        sd[f"to_rgbs.{j}.upsample.kernel"] = _fir() * 4
        styled(f"convs.{2 * j}", cin, cout, True)
        styled(f"convs.{2 * j + 1}", cout, cout, False)
        rgb(f"to_rgbs.{j}", cout)
        cin = cout
    for j in range(2 * (log - 2) + 1):
        res = 2 ** ((j + 5) // 2)
        sd[f"noises.noise_{j}"] = f(1, 1, res, res)
    sd["latent_avg"] = f(style_dim)
    return sd


def proggan(rng, sizes=(32, 48, 32, 16, 16, 8)):
    """sizes = [z_dim, 4x4 width, 8x8 width, ...] as the official `ProgressiveGenerator`."""
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    sd = {"layer1.conv.weight": f(sizes[1], sizes[0], 4, 4), "layer1.wscale.b": 0.1 * f(sizes[1]),
          "layer2.conv.weight": f(sizes[1], sizes[1], 3, 3), "layer2.wscale.b": 0.1 * f(sizes[1])}
    n = 3
    for si, so in zip(sizes[1:-1], sizes[2:]):
        for cin in (si, so):
            sd[f"layer{n}.conv.weight"], sd[f"layer{n}.wscale.b"] = f(so, cin, 3, 3), 0.1 * f(so)
            n += 1
    res = 4 * 2 ** ((n - 2) // 2)
    sd[f"output_{res}x{res}.conv.weight"] = 0.5 * f(3, sizes[-1], 1, 1)
    sd[f"output_{res}x{res}.wscale.b"] = 0.1 * f(3)
    return sd


def dcgan(rng, nz=16, ngf=8, nc=3, n_up=4):
    """Tutorial layout: main.0 ConvT(nz, ngf*2^n_up/2...), BN, ReLU, ..., ConvT(ngf, nc), Tanh."""
    widths = [ngf * 2 ** (n_up - 1 - i) for i in range(n_up)] + [nc]
    sd, cin = {}, nz
    for j, cout in enumerate(widths):
        i = 3 * j
        sd[f"main.{i}.weight"] = (0.2 * rng.standard_normal((cin, cout, 4, 4))).astype(np.float32)
        if j < n_up:
            sd[f"main.{i + 1}.weight"] = (1 + 0.1 * rng.standard_normal(cout)).astype(np.float32)
            sd[f"main.{i + 1}.bias"] = (0.1 * rng.standard_normal(cout)).astype(np.float32)
            sd[f"main.{i + 1}.running_mean"] = (0.1 * rng.standard_normal(cout)).astype(np.float32)
            sd[f"main.{i + 1}.running_var"] = rng.uniform(0.5, 2.0, cout).astype(np.float32)
            sd[f"main.{i + 1}.num_batches_tracked"] = np.array(1234, np.int64)
        cin = cout
    return sd
