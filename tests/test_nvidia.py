"""NVIDIA StyleGAN2-ADA network pickles (`../shared/golden/nvidia`): read as plain data without
running their code, mapped onto the sequential StyleGAN2, and matching NVIDIA's own outputs
(mapping with and without truncation, images with const and without noise, every synthesis
block's features and RGB, G against G_ema); crafted pickles run nothing."""

import pickle
import sys
import types

import numpy as np
import pytest
from conftest import rel_err, run

import checkpoints_convert as cc
import jaxrewrite as jr
from checkpoints_convert import CheckpointError, nvidia
from jaxrewrite.tree import flatten

NAMES = ["ada_auto32", "ada_paper_cond64"]


@pytest.fixture(scope="module", params=NAMES)
def snapshot(request, golden):
    folder = golden / "nvidia"
    name = request.param
    return (name, folder / f"{name}.pkl", np.load(folder / f"{name}_outputs.npz"),
            np.load(folder / f"{name}_G_ema_state.npz"))


def _labels(ref):
    return ref["c"] if ref["c"].size else None


def test_the_pickle_is_plain_data_with_nvidias_state(snapshot):
    _, path, _, state = snapshot
    assert nvidia.is_network_pickle(path)
    snap = cc.read(str(path))
    assert sorted(snap) == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
    g = snap["G_ema"]
    assert isinstance(g, nvidia.Persistent) and g.class_name == "Generator" and "synthesis_kwargs" in g.init_kwargs
    sd = g.state_dict()
    assert list(sd) == list(state.files)  # NVIDIA's names, in torch's order
    for key in state.files:
        np.testing.assert_array_equal(sd[key], state[key], err_msg=key)


def test_mapping_and_images_match_nvidia(snapshot):
    name, path, ref, _ = snapshot
    model = jr.load(path)
    assert model.arch == "stylegan2-ada"
    z, labels = ref["z"], _labels(ref)
    for psi, cutoff, key in ((1.0, None, "ws"), (0.7, None, "ws_psi0.7"), (0.5, 4, "ws_trunc_cutoff4_psi0.5")):
        gen = model.generator(truncation=psi, truncation_cutoff=cutoff)
        ws = gen.upto(model.params, gen.inputs(z, labels=labels), "input")["latent"]
        assert rel_err(ws, ref[key]) <= 1e-4, key
    for noise, suffix in (("fixed", "const"), ("zero", "none")):
        for psi, tail in ((1.0, ""), (0.7, "_psi0.7")):
            gen = model.generator(noise=noise, truncation=psi)
            image = np.asarray(gen(model.params, z, labels=labels)).transpose(0, 3, 1, 2)
            assert rel_err(image, ref[f"img_{suffix}{tail}"]) <= 1e-4, (suffix, tail)


def test_every_block_matches_nvidia(snapshot):
    _, path, ref, _ = snapshot
    model = jr.load(path)
    gen = model.generator(noise="fixed")
    bag = gen.inputs(ref["z"], labels=_labels(ref))
    blocks = sorted(int(k[len("act_block"):-2]) for k in ref.files if k.startswith("act_block") and k.endswith("_x"))
    for j, res in enumerate(blocks, start=1):
        out = gen.run(model.params, bag, 0, gen.span(f"to_rgb{j}")[1])
        assert rel_err(np.asarray(out["fmap"]).transpose(0, 3, 1, 2), ref[f"act_block{res}_x"]) <= 1e-4, res
        assert rel_err(np.asarray(out["output"]).transpose(0, 3, 1, 2), ref[f"act_block{res}_img"]) <= 1e-4, res


def test_g_is_not_g_ema(snapshot):
    _, path, ref, _ = snapshot
    g = jr.load(path, network="G")
    image = np.asarray(g.generator(noise="fixed")(g.params, ref["z"], labels=_labels(ref))).transpose(0, 3, 1, 2)
    assert rel_err(image, ref["img_G_not_ema_const"]) <= 1e-4
    assert g.config["network"] == "G" and rel_err(image, ref["img_const"]) > 1e-3


def test_cli_converts_samples_rewrites_and_exports(golden, tmp_path, capsys):
    """The unconditional snapshot through the command line; the export keeps NVIDIA's names
    and order, with the rewritten weight alone changed."""
    path = golden / "nvidia" / "ada_auto32.pkl"
    model = tmp_path / "m.msgpack"
    assert run("convert", path, "--out", model) == 0
    assert run("sample", "--model", model, "--n", 3, "--out", tmp_path / "s.npy") == 0
    gen = jr.load(model).generator(noise="fixed")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), np.asarray(gen(jr.load(model).params, jr.z_for(range(3), 64))),
                               atol=1e-5)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 255
    from PIL import Image

    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "edited.pt"
    assert run("--quiet", "edit", "--model", model, "--layer", "layer4", "--object", f"1:{tmp_path / 'm.png'}",
               "--paste", f"2:{tmp_path / 'm.png'}", "--stats-samples", 20, "--niter", 10, "--cache", tmp_path / "c",
               "--out", out) == 0
    state = np.load(golden / "nvidia" / "ada_auto32_G_ema_state.npz")
    sd = cc.read(str(out))
    assert list(sd) == list(state.files)
    assert [k for k in state.files if not np.array_equal(sd[k], state[k])] == ["synthesis.b8.conv1.weight"]
    assert run("sample", "--model", golden / "nvidia" / "ada_paper_cond64.pkl", "--n", 2, "--out", tmp_path / "c.npy") == 2
    assert "give the class (--class 0..3)" in capsys.readouterr().err
    assert run("sample", "--model", golden / "nvidia" / "ada_paper_cond64.pkl", "--class", 2, "--n", 2,
               "--out", tmp_path / "c.npy") == 0


def _crafted(tmp_path, meta_state, extra_global=None, protocol=3):
    """A network pickle written by pickle itself, its classes faked in sys.modules (the file
    names the same globals a real one does)."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called when writing")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules.setdefault("torch_utils", types.ModuleType("torch_utils"))
    sys.modules["torch_utils.persistence"] = persistence

    class Net:
        def __reduce__(self):
            meta = {"type": "class", "version": 6, "class_name": "Generator", "state": meta_state,
                    "module_src": f"open({str(tmp_path / 'marker')!r}, 'w').write('ran')"}
            return _reconstruct_persistent_obj, (meta,)

    try:
        data = pickle.dumps({"G_ema": Net(), "G": Net(), "extra": extra_global}, protocol=protocol)
    finally:
        del sys.modules["torch_utils.persistence"]
    path = tmp_path / "crafted.pkl"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("protocol", [3, 4])  # NVIDIA's setup wrote 3; a current Python writes 4 (STACK_GLOBAL)
def test_crafted_pickles_run_nothing(tmp_path, protocol):
    import os

    path = _crafted(tmp_path, {"_parameters": {}, "_buffers": {}, "_modules": {}, "_init_kwargs": {}}, protocol=protocol)
    assert nvidia.is_network_pickle(path)
    snap = cc.read(str(path))  # the module source is text, never run
    assert snap["G_ema"].meta["module_src"].startswith("open(")
    with pytest.raises(CheckpointError, match="has no mapping and synthesis networks"):
        jr.load(path)
    evil = _crafted(tmp_path, {"_init_kwargs": {}}, extra_global=os.system, protocol=protocol)
    with pytest.raises(CheckpointError, match="refusing to unpickle global 'posix.system'"):
        cc.read(str(evil))
    assert not (tmp_path / "marker").exists()


def test_numpy_dtypes_are_plain_numbers_only(tmp_path):
    """numpy's own dtype would accept any fields, offsets and flags a file sets (object fields
    read from raw bytes); only a plain number type passes, with the standard state."""
    head = b"\x80\x03cdnnlib.util\nEasyDict\n)\x81cnumpy\ndtype\n"
    for code, state, message in ((b"V8", b"", "unsupported numpy dtype 'V8'"),
                                 (b"f8", b"(K\x03X\x01\x00\x00\x00<}NNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
                                  "malformed numpy dtype state")):
        path = tmp_path / "d.pkl"
        path.write_bytes(head + b"X" + len(code).to_bytes(4, "little") + code + b"\x89\x88\x87R" + state + b"\x86.")
        with pytest.raises(CheckpointError, match=message):
            cc.read(str(path))
    # the reference snapshots' own numpy scalars (plain float64 / int64) load: see the tests above


@pytest.mark.parametrize("cut", [10, 1000, 100_000])
def test_truncated_pickles_give_one_line(golden, tmp_path, cut):
    data = (golden / "nvidia" / "ada_auto32.pkl").read_bytes()
    path = tmp_path / "t.pkl"
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError) as e:
        jr.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_other_generators_are_refused_by_name(golden):
    snap = cc.read(str(golden / "nvidia" / "ada_auto32.pkl"))
    g = snap["G_ema"]
    g.state["_init_kwargs"] = {**g.init_kwargs, "synthesis_kwargs": {**g.init_kwargs["synthesis_kwargs"],
                                                                     "architecture": "resnet"}}
    with pytest.raises(CheckpointError, match="'resnet' generator; only 'skip'"):
        jr.convert(snap)
    with pytest.raises(CheckpointError, match="the generator is 'G_ema' or 'G'"):
        jr.convert(cc.read(str(golden / "nvidia" / "ada_auto32.pkl")), network="D")
    assert flatten(jr.convert(cc.read(str(golden / "nvidia" / "ada_auto32.pkl"))).params)


def _globals(data):
    import pickletools

    return {str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def test_pkl_export_is_the_pickle_with_the_edit_in_place(golden, tmp_path, capsys):
    """.pkl -> model -> .pkl is the same file; after a rewrite, the exported pickle differs only
    in the rewritten tensor's bytes (same globals, metadata, module source, G and D), and it
    reads back to the edited model."""
    original = golden / "nvidia" / "ada_auto32.pkl"
    assert run("convert", original, "--out", tmp_path / "m.msgpack") == 0
    assert run("export", "--model", tmp_path / "m.msgpack", "--out", tmp_path / "same.pkl") == 0
    assert (tmp_path / "same.pkl").read_bytes() == original.read_bytes()
    mask = tmp_path / "m.png"
    from PIL import Image

    Image.fromarray(np.pad(np.full((12, 12), 255, np.uint8), ((8, 12), (8, 12)))).save(mask)
    assert run("--quiet", "edit", "--model", tmp_path / "m.msgpack", "--layer", "layer6", "--object", f"1:{mask}",
               "--paste", f"2:{mask}", "--stats-samples", 20, "--niter", 10, "--cache", tmp_path / "c",
               "--out", tmp_path / "edited.msgpack") == 0
    assert run("export", "--model", tmp_path / "edited.msgpack", "--out", tmp_path / "edited.pkl") == 0
    assert "G_ema carries the model's weights" in capsys.readouterr().out
    before, after = original.read_bytes(), (tmp_path / "edited.pkl").read_bytes()
    assert len(before) == len(after) and before != after and _globals(before) == _globals(after)
    a, b = nvidia.load(original), nvidia.load(tmp_path / "edited.pkl")
    for net in ("G", "D"):
        sa, sb = a[net].state_dict(), b[net].state_dict()
        assert all(np.array_equal(sa[k], sb[k]) for k in sa), net
    sa, sb = a["G_ema"].state_dict(), b["G_ema"].state_dict()
    assert [k for k in sa if not np.array_equal(sa[k], sb[k])] == ["synthesis.b16.conv1.weight"]
    assert b["G_ema"].meta["module_src"] == a["G_ema"].meta["module_src"]
    assert b["G_ema"].init_kwargs == a["G_ema"].init_kwargs
    reread, edited = (flatten(jr.load(tmp_path / n).params) for n in ("edited.pkl", "edited.msgpack"))
    assert all(np.array_equal(reread[k], edited[k]) for k in edited)
    assert run("export", "--model", "towns64", "--out", tmp_path / "t.pkl") == 2
    assert "only a model converted from an NVIDIA network pickle" in capsys.readouterr().err


def test_conditional_models_edit_with_a_class(golden, tmp_path, capsys):
    """One class for the edit's examples and its statistics; without one, a clear line; a
    class for a model that has none is refused."""
    from PIL import Image

    path = golden / "nvidia" / "ada_paper_cond64.pkl"
    mask = tmp_path / "m.png"
    Image.fromarray(np.pad(np.full((24, 24), 255, np.uint8), 20)).save(mask)
    common = ["--layer", "layer6", "--object", f"1:{mask}", "--paste", f"2:{mask}", "--stats-samples", 20, "--niter",
              10, "--cache", tmp_path / "c"]
    assert run("--quiet", "edit", "--model", path, *common, "--class", 2, "--out", tmp_path / "e.msgpack") == 0
    edited, original = jr.load(tmp_path / "e.msgpack"), jr.load(path)
    changed = [k for k, v in flatten(original.params).items() if not np.array_equal(v, flatten(edited.params)[k])]
    assert changed == ["layer6.sconv.mconv.dconv.kernel"]
    capsys.readouterr()
    assert run("--quiet", "edit", "--model", path, *common, "--out", tmp_path / "x.msgpack") == 2
    assert "conditional on 4 classes: give the class (--class 0..3)" in capsys.readouterr().err
    assert run("--quiet", "edit", "--model", path, *common, "--class", 7, "--out", tmp_path / "x.msgpack") == 2
    assert "class 7 is not one of this model's 0..3" in capsys.readouterr().err
    assert run("--quiet", "edit", "--model", golden / "nvidia" / "ada_auto32.pkl", *common, "--class", 1,
               "--out", tmp_path / "x.msgpack") == 2
    assert "not conditional" in capsys.readouterr().err and not (tmp_path / "x.msgpack").exists()


def test_every_command_runs_on_both_snapshots(golden, tmp_path, capsys):
    """layers, erase, zero and finetune on the unconditional snapshot; the conditional one
    rewritten with a class and exported back to .pkl, which reads back to the edited model."""
    from PIL import Image

    auto, cond = golden / "nvidia" / "ada_auto32.pkl", golden / "nvidia" / "ada_paper_cond64.pkl"
    assert run("layers", "--model", auto) == 0 and "<- --layer layer8" in capsys.readouterr().out
    mask32, mask64 = tmp_path / "m32.png", tmp_path / "m64.png"
    Image.fromarray(np.pad(np.full((12, 12), 255, np.uint8), 10)).save(mask32)
    Image.fromarray(np.pad(np.full((24, 24), 255, np.uint8), 20)).save(mask64)
    fast = ["--stats-samples", 20, "--cache", tmp_path / "c"]
    assert run("--quiet", "erase", "--model", auto, "--layer", "layer5", "--paste", f"2:{mask32}", "--drank", 4,
               "--niter", 5, *fast, "--out", tmp_path / "erased.msgpack") == 0
    assert run("--quiet", "zero", "--model", auto, "--layer", "layer5", "--context", f"2:{mask32}", *fast,
               "--out", tmp_path / "zeroed.msgpack") == 0
    assert run("--quiet", "finetune", "--model", auto, "--edit", _request_file(tmp_path, mask32), "--niter", 2,
               "--out", tmp_path / "tuned.msgpack") == 0
    assert run("--quiet", "edit", "--model", cond, "--class", 3, "--layer", "layer7", "--object", f"1:{mask64}",
               "--paste", f"2:{mask64}", "--niter", 5, *fast, "--out", tmp_path / "cond.pkl") == 0
    a, b = nvidia.load(cond), nvidia.load(tmp_path / "cond.pkl")
    sa, sb = a["G_ema"].state_dict(), b["G_ema"].state_dict()
    assert [k for k in sa if not np.array_equal(sa[k], sb[k])] == ["synthesis.b32.conv0.weight"]
    assert _globals(cond.read_bytes()) == _globals((tmp_path / "cond.pkl").read_bytes())


def _request_file(tmp_path, mask):
    from jaxrewrite.rewrite import editfile

    levels = editfile.read_png_mask(mask)
    return jr.write_edit(jr.Request.from_arrays(object=(1, levels), paste=(2, levels)), tmp_path / "r.json")
