"""Checkpoint conversion: exact round trips, layouts, and one clear error per bad input."""

import chex
import numpy as np
import pytest

import checkpoints_convert as cc
import factories
from checkpoints_convert.torch_format import CheckpointError
from jaxrewrite import modelfile


def assert_same_checkpoint(a, b):
    """Same keys in the same order, same dtypes, same bytes, same nesting."""
    assert isinstance(a, dict) and isinstance(b, dict)
    assert list(a) == list(b)
    for k in a:
        if isinstance(b[k], dict):
            assert_same_checkpoint(a[k], b[k])
        else:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("path", ["stylegan2/weights_rosinality.pt", "proggan/weights.pt",
                                  "stylegan2/weights_seq.npz", "stylegan2/weights_rosinality.npz"])
def test_golden_round_trip_is_exact(golden, tmp_path, path):
    original = cc.read(str(golden / path))
    model = modelfile.convert(original)
    assert_same_checkpoint(modelfile.to_checkpoint(model), original)
    # through the model file and back out to a file of the same kind
    modelfile.save(model, tmp_path / "m.msgpack")
    out = tmp_path / ("out" + ("" if path.endswith(".pt") else ".npz"))
    modelfile.write_checkpoint(modelfile.to_checkpoint(modelfile.load(tmp_path / "m.msgpack")), str(out))
    assert_same_checkpoint(cc.read(str(out)), original)


def test_rosinality_tree_names(golden):
    model = modelfile.load(str(golden / "stylegan2/weights_rosinality.pt"))
    assert model.arch == "stylegan2" and model.source["layout"] == "rosinality"
    kernel = model.params["layer6"]["sconv"]["mconv"]["dconv"]["kernel"]
    torch_weight = cc.read(str(golden / "stylegan2/weights_rosinality.pt"))["g_ema"]["convs.3.conv.weight"]
    assert kernel.shape == (3, 3, 64, 64)  # HWIO
    np.testing.assert_array_equal(kernel[1, 2, 5, 7], torch_weight[0, 7, 5, 1, 2])


def test_dcgan_round_trip_with_wrapper_and_buffers(tmp_path):
    sd = factories.dcgan(np.random.default_rng(0))
    ckpt = {"netG_state_dict": sd}
    modelfile.write_checkpoint(ckpt, tmp_path / "g.pt")
    loaded = cc.read(str(tmp_path / "g.pt"))
    model = modelfile.convert(loaded)
    assert model.arch == "dcgan" and "bn" in model.params["layer1"]
    modelfile.save(model, tmp_path / "g.msgpack")
    assert_same_checkpoint(modelfile.to_checkpoint(modelfile.load(tmp_path / "g.msgpack")), loaded)


def test_old_proggan_names_convert_and_export(tmp_path):
    sd = factories.proggan(np.random.default_rng(1), (16, 32, 16))
    old = {}
    for k, v in sd.items():
        head, rest = k.split(".", 1)
        old[f"features.{int(head[5:]) - 1}.{rest}" if head.startswith("layer") else f"output.{rest}"] = v
    new_model, old_model = modelfile.convert(sd), modelfile.convert(old)
    assert old_model.source["layout"] == "proggan_old"
    chex.assert_trees_all_equal(new_model.params, old_model.params)
    z = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    np.testing.assert_array_equal(new_model.generator()(new_model.params, z), old_model.generator()(old_model.params, z))
    assert_same_checkpoint(modelfile.to_checkpoint(old_model), old)
    assert_same_checkpoint(modelfile.to_checkpoint(modelfile.convert({"state_dict": sd})), {"state_dict": sd})


def test_data_parallel_prefix_is_kept():
    sd = {f"module.{k}": v for k, v in factories.proggan(np.random.default_rng(2), (16, 32, 16)).items()}
    assert_same_checkpoint(modelfile.to_checkpoint(modelfile.convert(sd)), sd)


def test_edited_weights_are_exported():
    sd = factories.proggan(np.random.default_rng(3), (16, 32, 16))
    model = modelfile.convert(sd)
    model.params["layer3"]["conv"]["kernel"] = model.params["layer3"]["conv"]["kernel"] * 2
    out = modelfile.to_checkpoint(model)
    np.testing.assert_array_equal(out["layer3.conv.weight"], sd["layer3.conv.weight"] * 2)


def _sg2():
    return factories.stylegan2(np.random.default_rng(4), 16, 16, 2, {4: 16, 8: 16, 16: 8})


@pytest.mark.parametrize("mutate,message", [
    (lambda sd: sd.update({"convs.1.conv.extra": np.zeros(3, np.float32)}), r"unknown key 'convs.1.conv.extra'"),
    (lambda sd: sd.pop("convs.1.activate.bias"), r"missing key 'convs.1.activate.bias'"),
    (lambda sd: sd.pop("convs.1.conv.weight"), r"missing key 'convs.1.conv.weight'"),
    (lambda sd: sd.update({"convs.0.conv.weight": np.zeros((1, 16, 15, 3, 3), np.float32)}),
     r"key 'convs.0.conv.weight' has shape \(1, 16, 15, 3, 3\), expected \(1, 16, 16, 3, 3\)"),
    (lambda sd: sd.update({"to_rgb1.bias": np.zeros((1, 3), np.float32)}), r"key 'to_rgb1.bias' has shape"),
    (lambda sd: sd.update({"style.1.bias": "oops"}), r"entry 'style.1.bias' is a str, not a tensor"),
    (lambda sd: sd.update({"style.1.weight": np.zeros(16, np.float32)}),
     r"key 'style.1.weight' has shape \(16,\), expected 2 dimensions"),
    (lambda sd: sd.update({"conv1.conv.weight": np.zeros((16, 16, 3, 3), np.float32)}),
     r"key 'conv1.conv.weight' has shape \(16, 16, 3, 3\), expected 5 dimensions"),
])
def test_stylegan2_errors_name_the_key(mutate, message):
    sd = _sg2()
    mutate(sd)
    with pytest.raises(CheckpointError, match=message):
        modelfile.convert({"g_ema": sd})


def test_architecture_errors():
    with pytest.raises(CheckpointError, match="cannot tell the architecture"):
        modelfile.convert({"foo.weight": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="not a dcgan state dict"):
        modelfile.convert(_sg2(), arch="dcgan")
    with pytest.raises(CheckpointError, match="expected a dict"):
        modelfile.convert([1, 2])
    sd = factories.proggan(np.random.default_rng(5), (16, 32, 16))
    sd.pop("layer4.conv.weight"), sd.pop("layer4.wscale.b")
    with pytest.raises(CheckpointError, match="layer4.conv.weight"):
        modelfile.convert(sd)
    sd = factories.proggan(np.random.default_rng(5), (16, 32, 16))
    sd["layer1.conv.weight"] = sd["layer1.conv.weight"][0]
    with pytest.raises(CheckpointError, match=r"key 'layer1.conv.weight' has shape \(16, 4, 4\), expected 4 dimensions"):
        modelfile.convert(sd)
    sd = factories.dcgan(np.random.default_rng(6))
    first = next(k for k in sd if k.endswith(".weight"))
    sd[first] = sd[first].reshape(-1)
    with pytest.raises(CheckpointError, match=f"key '{first}' has shape .*, expected 4 dimensions"):
        modelfile.convert(sd)


def test_model_file_errors(tmp_path):
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x85\xa6format\xb0jaxrewrite-model garbage")
    with pytest.raises(modelfile.ModelFileError, match="bad.msgpack"):
        modelfile.load(str(bad))
    with pytest.raises(CheckpointError, match="no such file"):
        modelfile.load(str(tmp_path / "missing.pt"))


def test_digest_tracks_weights():
    model = modelfile.convert(factories.proggan(np.random.default_rng(6), (16, 32, 16)))
    d = model.digest()
    assert d == modelfile.convert(factories.proggan(np.random.default_rng(6), (16, 32, 16))).digest()
    model.params["layer1"]["wscale"]["bias"] = model.params["layer1"]["wscale"]["bias"] + 1
    assert model.digest() != d
