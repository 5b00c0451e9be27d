"""Many edits in one vmapped program; statistics: streaming, sharding, caching."""

import os
import pickle
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import factories
from jaxrewrite import modelfile
from jaxrewrite.rewrite import batch, stats, update
from jaxrewrite.rewrite.editfile import encode_mask, parse_edit
from jaxrewrite.rewrite.pipeline import EditOptions, compose
from jaxrewrite.rewrite.rewriter import Rewriter
from jaxrewrite.tree import get
from jaxrewrite.zdataset import z_dataset


def _edit(box_obj, box_paste, size=16):
    def url(box):
        m = np.zeros((size, size))
        t, l, b, r = box
        m[t:b, l:r] = 1
        return encode_mask(m)

    return parse_edit({"object": [1, url(box_obj)], "paste": [2, url(box_paste)], "key": [[2, url(box_paste)]]})


@pytest.fixture(scope="module")
def proggan_rw():
    model = modelfile.convert(factories.proggan(np.random.default_rng(0), (16, 32, 16, 16)))
    return Rewriter(model, "layer5", stats_samples=20)


@pytest.fixture(scope="module")
def stylegan2_rw():
    model = modelfile.convert(factories.stylegan2(np.random.default_rng(1), 16, 16, 1, {4: 16, 8: 16, 16: 8}))
    return Rewriter(model, "layer6", stats_samples=20)


def _single(rw, goal, d, lr, niter, method="projected"):
    result = rw.insert(goal, d, method, niter=niter, piter=10, lr=lr)
    return result.weight, result.losses


@pytest.mark.parametrize("which,group,method", [("proggan", None, m) for m in update.METHODS] + [
    ("stylegan2", None, m) for m in update.METHODS if not update.METHODS[m].linear_only] + [("proggan", 1, "projected")])
def test_vmapped_edits_equal_separate_runs(which, group, method, proggan_rw, stylegan2_rw):
    """Every registered method through `insert_many` equals the same edits run one by one."""
    rw = proggan_rw if which == "proggan" else stylegan2_rw
    if which == "proggan":  # different goal sizes: padded, exact for a plain conv
        edits = [_edit((2, 2, 7, 8), (6, 6, 12, 12)), _edit((3, 3, 6, 6), (1, 2, 5, 7))]
    else:  # StyleGAN2's official noise depends on the shape: same-size goals
        edits = [_edit((2, 2, 7, 8), (6, 6, 12, 12)), _edit((8, 1, 13, 7), (2, 4, 7, 10))]
    goals = [rw.copy_paste_goal(e) for e in edits]
    ds = [rw.key(e.key, rank) for e, rank in zip(edits, (1, 2))]  # different ranks: zero rows pad the first
    lrs = [0.05, 0.02]
    many = batch.insert_many(rw, goals, ds, lrs, niter=25, method=method, group=group)  # group 1: an edit per call
    w, losses = many.weight, many.losses
    with pytest.raises(ValueError, match="one goal, context and learning rate per edit: got 2, 2 and 1"):
        batch.insert_many(rw, goals, ds, lrs[:1], niter=25, group=group)
    for i in range(len(edits)):
        w1, l1 = _single(rw, goals[i], ds[i], lrs[i], 25, method)
        assert losses[i].shape == l1.shape == ((2,) if method == "closed" else (25,))
        assert not np.allclose(w1, get(rw.model.params, rw.weight_path))
        # the closed form fits a ProGAN goal exactly: its final L1 is float32 noise (~5e-7 of the
        # first), which differs between the padded batch and the single run: absolute
        # agreement is asked relative to the loss's scale
        np.testing.assert_allclose(losses[i], l1, rtol=2e-4, atol=1e-6 * max(1.0, float(l1[0])))
        np.testing.assert_allclose(w[i], w1, atol=2e-4 * np.abs(w1).max())


def test_repeated_edits_of_a_layer_compile_once(proggan_rw):
    rw = Rewriter(proggan_rw.model, "layer5", stats_samples=20)
    edits = [_edit((2, 2, 7, 8), (6, 6, 12, 12)), _edit((3, 3, 8, 9), (1, 2, 6, 8))]  # same goal shape
    goals, ds = [rw.copy_paste_goal(e) for e in edits], [rw.key(e.key, 1) for e in edits]
    first = _single(rw, goals[0], ds[0], 0.05, 7)
    _single(rw, goals[1], ds[1], 0.02, 7)
    (program,) = rw._programs.values()
    assert program._cache_size() == 1  # another goal, key and rate: the same compiled program
    np.testing.assert_array_equal(_single(rw, goals[0], ds[0], 0.05, 7)[0], first[0])
    fresh = Rewriter(proggan_rw.model, "layer5", stats_samples=20)
    np.testing.assert_array_equal(_single(fresh, goals[1], ds[1], 0.02, 7)[0], _single(rw, goals[1], ds[1], 0.02, 7)[0])


def test_sweep_and_compose(proggan_rw):
    edit = _edit((2, 2, 7, 8), (6, 6, 12, 12))
    rows = batch.sweep(proggan_rw.model, edit, ["layer3", "layer5"], [1, 2], [0.05, 0.1], niter=15, stats_samples=20)
    assert len(rows) == 8 and {r["layer"] for r in rows} == {"layer3", "layer5"}
    assert all(r["loss_end"] < r["loss_start"] for r in rows)
    options = EditOptions(stats_samples=20, niter=15)
    model, infos = compose(proggan_rw.model, [("layer5", edit, options), ("layer3", edit, options)])
    for layer in ("layer3", "layer5"):
        assert not np.array_equal(get(model.params, f"{layer}.conv.kernel"),
                                  get(proggan_rw.model.params, f"{layer}.conv.kernel"))
    assert len(infos) == 2


def test_second_moment_matches_direct_computation(proggan_rw):
    gen, params = proggan_rw.gen, proggan_rw.model.params
    # the keys are taken before the nearest upsample (4x fewer), compared below with the upsampled ones
    assert gen.stats_cut("layer5.conv") == "layer5.up" and gen.stats_cut("layer4.conv") == "layer4.conv"
    with jax.transfer_guard_host_to_device("disallow"):  # numpy parameters go to the device once, explicitly
        c = stats.second_moment(gen, params, "layer5.conv", n=13, seed=3, batch_size=4)
    k = np.asarray(gen.upto(params, gen.inputs(z_dataset(13, gen.z_dim, 3)), "layer5.conv")["fmap"], np.float64)
    k = k.reshape(-1, k.shape[-1])
    np.testing.assert_allclose(c, k.T @ k / len(k), rtol=1e-5, atol=1e-7 * np.abs(c).max())
    # 13 batches of one image: two calls of 7 (stats.CHUNK = 8), the last batch padded with weight 0
    np.testing.assert_allclose(stats.second_moment(gen, params, "layer5.conv", n=13, seed=3, batch_size=1), c,
                               rtol=1e-5, atol=1e-7 * np.abs(c).max())
    z = stats.zca(c)
    np.testing.assert_allclose(z @ c @ z, np.eye(len(c)), atol=1e-4)
    x = np.random.default_rng(0).standard_normal((3, len(c)))
    np.testing.assert_allclose(stats.solve(c, x) @ c, x, atol=1e-6 * np.abs(x).max() * np.linalg.cond(c))


def test_cache_is_used_and_corruption_recomputed(proggan_rw, tmp_path):
    model = proggan_rw.model
    c1 = stats.cached_second_moment(model, {}, "layer5.conv", 8, 1, 4, str(tmp_path))
    (path,) = tmp_path.iterdir()
    np.savez(path, c_matrix=np.zeros_like(c1) + 7, meta=np.load(path)["meta"])  # tampered but well-formed
    assert np.all(stats.cached_second_moment(model, {}, "layer5.conv", 8, 1, 4, str(tmp_path)) == 7)
    path.write_bytes(b"garbage")  # corrupt: recomputed and rewritten
    np.testing.assert_allclose(stats.cached_second_moment(model, {}, "layer5.conv", 8, 1, 4, str(tmp_path)), c1)
    assert np.load(path)["c_matrix"].shape == c1.shape
    # a different sample count is a different cache entry
    stats.cached_second_moment(model, {}, "layer5.conv", 9, 1, 4, str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 2


SHARDED = """
import pickle, sys, numpy as np, jax, factories
if len(sys.argv) > 1:  # one of two processes, each with two of the four devices
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    assert jax.local_device_count() == 2
from jaxrewrite import modelfile, sharding
from jaxrewrite.rewrite import batch, stats
from jaxrewrite.rewrite.rewriter import Rewriter
assert jax.device_count() == 4
model = modelfile.convert(factories.proggan(np.random.default_rng(0), (16, 32, 16, 16)))
for leaf in jax.tree_util.tree_leaves(sharding.replicate(model.params)):
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4, leaf.sharding
gen = model.generator()
c = stats.second_moment(gen, model.params, "layer5.conv", n=13, seed=3, batch_size=6)
with open(%r, "rb") as f:
    goals, contexts, lrs = pickle.load(f)
many = batch.insert_many(Rewriter(model, "layer5", stats_samples=20), goals, contexts, lrs, niter=15)
w, losses = many.weight, many.losses
np.savez(%r + (sys.argv[2] if len(sys.argv) > 1 else "") + ".npz", c=c, w=w, losses=losses)
"""
EDITS = [((2, 2, 7, 8), (6, 6, 12, 12)), ((3, 3, 6, 6), (1, 2, 5, 7)), ((1, 1, 9, 9), (4, 4, 10, 12))]


def edit_batch(rw):
    """Three edits (the device count does not divide them): rw, goals, contexts, lrs."""
    edits = [_edit(*boxes) for boxes in EDITS]
    return rw, [rw.copy_paste_goal(e) for e in edits], [rw.key(e.key, 1) for e in edits], [0.05, 0.02, 0.1]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("processes", [1, 2])
def test_statistics_and_edits_sharded_over_four_host_devices(processes, proggan_rw, tmp_path):
    """Four CPU devices in one process, or two processes with two each (the multi-host path:
    `jax.distributed.initialize`, CPU collectives over gloo): every process gets the whole C
    and every edit, equal to one device's."""
    # The edits get the very same goals and keys: computed in another process, the context
    # convolutions may round differently (XLA's CPU kernels split work by thread count), and
    # Adam's first, sign-like steps amplify 1e-7 of the input into 1e-4 of the loss.
    out, inputs = tmp_path / "sharded", tmp_path / "inputs.pkl"
    rw, goals, contexts, lrs = edit_batch(proggan_rw)
    inputs.write_bytes(pickle.dumps((goals, contexts, lrs)))
    dump = tmp_path / "hlo"  # the compiled programs, to see where they communicate
    flags = f"--xla_force_host_platform_device_count={4 // processes}"
    flags += f" --xla_dump_to={dump} --xla_dump_hlo_as_text" if processes == 1 else ""
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.getcwd()])}
    script = [sys.executable, "-c", SHARDED % (str(inputs), str(out))]
    address = f"localhost:{_free_port()}"
    args = [[address, str(i)] for i in range(processes)] if processes > 1 else [[]]
    procs = [subprocess.Popen(script + a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in args]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
    single = stats.second_moment(proggan_rw.gen, proggan_rw.model.params, "layer5.conv", n=13, seed=3, batch_size=6)
    many = batch.insert_many(rw, goals, contexts, lrs, niter=15)
    w, losses = many.weight, many.losses
    grouped = batch.insert_many(rw, goals, contexts, lrs, niter=15, group=2)  # two calls, the second padded
    with pytest.raises(ValueError, match="edits per device"):
        batch.insert_many(rw, goals, contexts, lrs, niter=15, group=0)
    np.testing.assert_allclose(grouped.losses, losses, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grouped.weight, w, atol=1e-4 * np.abs(w).max())
    for name in [f"sharded{i}.npz" for i in range(processes)] if processes > 1 else ["sharded.npz"]:
        sharded = np.load(tmp_path / name)
        np.testing.assert_allclose(sharded["c"], single, rtol=1e-5, atol=1e-7 * np.abs(single).max())
        assert sharded["w"].shape == w.shape and sharded["losses"].shape == losses.shape == (3, 15)
        np.testing.assert_allclose(sharded["losses"], losses, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(sharded["w"], w, atol=1e-4 * np.abs(w).max())
    if processes == 1:  # the statistics' partial sums meet once per call, the edits never
        collectives = [_collectives_in_loops(f.read_text()) for f in dump.glob("*after_optimizations.txt")]
        assert sum(1 for inside, outside in collectives if outside) >= 1
        assert all(not inside for inside, outside in collectives), collectives


def _collectives_in_loops(hlo):
    """(collective ops inside while loops, outside them) in a compiled HLO module's text."""
    callee = re.compile(r"(?:body|condition|calls|to_apply)=%([\w.-]+)|branch_computations=\{([^}]*)\}")
    comps, calls, name = {}, {}, None
    for line in hlo.splitlines():
        header = not line.startswith(" ") and re.match(r"(?:ENTRY )?%?([\w.-]+) .*\{$", line)
        if header:  # a computation's first line; its instructions are indented
            name = header.group(1)
            comps[name], calls[name] = [], set()
        elif name and line.startswith(" "):
            comps[name].append(line)
            for m in callee.finditer(line):
                calls[name] |= {m.group(1)} if m.group(1) else set(re.findall(r"%([\w.-]+)", m.group(2)))
    todo = [b for lines in comps.values() for line in lines for b in re.findall(r"body=%([\w.-]+)", line)]
    loops = set()
    while todo:  # loop bodies and everything they call
        c = todo.pop()
        if c not in loops:
            loops.add(c)
            todo += calls.get(c, ())
    ops = re.compile(r" (all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)(-start)?\(")
    found = [(c in loops, op.group(1)) for c, lines in comps.items() for line in lines for op in [ops.search(line)] if op]
    return [op for inside, op in found if inside], [op for inside, op in found if not inside]
