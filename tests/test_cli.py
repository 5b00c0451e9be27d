"""`jaxrewrite convert` + `jaxrewrite sample` reproduce the official images; bad input fails cleanly."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import nchw, rel_err, run

import factories
from checkpoints_convert import torch_format
from jaxrewrite import modelfile


@pytest.mark.parametrize("arch,ckpt", [("stylegan2", "weights_rosinality.pt"), ("proggan", "weights.pt")])
def test_convert_then_sample_reproduces_official_images(golden, tmp_path, arch, ckpt):
    model = tmp_path / "model.msgpack"
    assert run("convert", golden / arch / ckpt, "--out", model) == 0
    s = np.load(golden / arch / "samples.npz")
    # one image per call, as the official rewriter renders (noise row 0 for StyleGAN2)
    assert run("sample", "--model", model, "--n", 8, "--seed", 1, "--batch-size", 3, "--out", tmp_path / "a.npy") == 0
    assert rel_err(nchw(np.load(tmp_path / "a.npy")), s["images_single"]) < 1e-4
    # all 8 in one official batch
    assert run("sample", "--model", model, "--n", 8, "--noise-batch", 8, "--out", tmp_path / "b.npy") == 0
    assert rel_err(nchw(np.load(tmp_path / "b.npy")), s["images_batch"]) < 1e-4
    assert run("sample", "--model", model, "--n", 5, "--out", tmp_path / "grid.png") == 0
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (96, 64)


def test_sample_straight_from_torch_file_and_layers(golden, tmp_path, capsys):
    assert run("sample", "--model", golden / "proggan/weights.pt", "--n", 2, "--out", tmp_path / "x.npy") == 0
    assert np.load(tmp_path / "x.npy").shape == (2, 32, 32, 3)
    assert run("layers", "--model", golden / "stylegan2/weights_rosinality.pt") == 0
    out = capsys.readouterr().out
    assert "layer6.sconv.mconv.dconv" in out and "(1, 16, 16, 64)" in out


@pytest.mark.parametrize("legacy", [False, True])
def test_dcgan_cli_and_export(tmp_path, legacy):
    sd = factories.dcgan(np.random.default_rng(0))
    modelfile.write_checkpoint({"netG_state_dict": sd}, tmp_path / "g.pt", legacy=legacy)
    assert run("convert", tmp_path / "g.pt", "--out", tmp_path / "g.msgpack") == 0
    assert run("sample", "--model", tmp_path / "g.msgpack", "--n", 4, "--out", tmp_path / "s.npy") == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 64, 64, 3)
    assert run("export", "--model", tmp_path / "g.msgpack", "--out", tmp_path / "back.pt") == 0
    back = torch_format.load(tmp_path / "back.pt")["netG_state_dict"]
    assert list(back) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])


def test_config_override(tmp_path):
    sd = factories.dcgan(np.random.default_rng(0))
    modelfile.write_checkpoint(sd, tmp_path / "g.pt")
    assert run("convert", tmp_path / "g.pt", "--out", tmp_path / "m", "--config", '{"bn_eps": 0.001}') == 0
    assert modelfile.load(tmp_path / "m").config["bn_eps"] == 0.001


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_bad_checkpoint_exits_nonzero_without_output(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    out = tmp_path / "out.msgpack"
    assert run("convert", bad, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxrewrite: error:") and "\n" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_bad_arguments(tmp_path, capsys):
    sd = factories.proggan(np.random.default_rng(0), (16, 32, 16))
    modelfile.write_checkpoint(sd, tmp_path / "p.pt")
    assert run("sample", "--model", tmp_path / "p.pt", "--n", 0, "--out", tmp_path / "x.npy") == 2
    assert run("sample", "--model", tmp_path / "p.pt", "--n", 2, "--out", tmp_path / "x.gif") == 2
    assert run("convert", tmp_path / "p.pt", "--arch", "dcgan", "--out", tmp_path / "m") == 2
    assert run("convert", tmp_path / "missing.pt", "--out", tmp_path / "m") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.pt"]


@pytest.mark.parametrize("argv,message", [
    (["--n", "0"], "argument --n: must be an integer >= 1, got '0'"),
    (["--batch-size", "two"], "argument --batch-size: must be an integer >= 1, got 'two'"),
    (["--noise-batch", "0"], "argument --noise-batch: must be an integer >= 1"),
    (["--noise", "fixed"], "noise='fixed' needs the checkpoint's noise buffers"),
])
def test_bad_options_fail_in_one_line(tmp_path, capsys, argv, message):
    sd = factories.stylegan2(np.random.default_rng(0), 16, 16, 1, {4: 16, 8: 16, 16: 8})
    modelfile.write_checkpoint({k: v for k, v in sd.items() if not k.startswith("noises.")}, tmp_path / "s.pt")
    assert run("sample", "--model", tmp_path / "s.pt", "--out", tmp_path / "x.npy", *argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt"]


def test_output_suffix_in_any_case(tmp_path):
    sd = factories.proggan(np.random.default_rng(0), (16, 32, 16))
    modelfile.write_checkpoint(sd, tmp_path / "p.pt")
    assert run("sample", "--model", tmp_path / "p.pt", "--n", 2, "--out", tmp_path / "x.NPY") == 0
    assert np.load(tmp_path / "x.NPY").shape == (2, 8, 8, 3)
    assert run("sample", "--model", tmp_path / "p.pt", "--n", 2, "--out", tmp_path / "x.PNG") == 0
    from PIL import Image

    assert Image.open(tmp_path / "x.PNG").format == "PNG"


def test_help_describes_every_command_and_option(capsys):
    import argparse

    from jaxrewrite.cli import parser

    assert run("edit", "--help") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "optimisation steps (default: 2001)" in out and "(default: zca)" in out and "example: jaxrewrite edit" in out
    assert "--stats-seed" not in out  # the former name still works, unlisted
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert len(sub.choices) == 13
    for name, p in sub.choices.items():
        assert p.description and p.epilog.startswith("example"), name
        for action in p._actions:
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
                assert action.help, (name, action.dest)
    assert run("--version") == 0 and capsys.readouterr().out.startswith("jaxrewrite ")


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxrewrite", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "convert" in proc.stdout and "sample" in proc.stdout


def test_precision_is_float32_unless_asked(monkeypatch):
    import jax
    from jaxrewrite.cli import set_precision

    monkeypatch.delenv("JAX_DEFAULT_MATMUL_PRECISION", raising=False)
    try:
        set_precision("default")
        assert jax.config.jax_default_matmul_precision is None
        set_precision(None)
        assert jax.config.jax_default_matmul_precision == "highest"
        monkeypatch.setenv("JAX_DEFAULT_MATMUL_PRECISION", "tensorfloat32")
        jax.config.update("jax_default_matmul_precision", "tensorfloat32")
        set_precision(None)  # the user's environment wins over the default
        assert jax.config.jax_default_matmul_precision == "tensorfloat32"
    finally:
        jax.config.update("jax_default_matmul_precision", "highest")  # as conftest sets it


@pytest.mark.parametrize("config,message", [
    ('{"lr_mlp": 0.1}', "unknown config entry 'lr_mlp' for dcgan; known: strides, paddings, bn_eps"),
    ('{"bn_eps": "x"}', "config entry 'bn_eps' must be a number, got 'x'"),
    ('{"strides": 2}', "config entry 'strides' must be a list of integers >= 0, got 2"),
    ('{"strides": ["a"]}', "config entry 'strides' must be a list of integers >= 0, got ['a']"),
    ("[1, 2]", "config must be a JSON object, got list"),
    ("{nope", "--config is not JSON"),
])
def test_config_is_checked_against_the_architecture(tmp_path, capsys, config, message):
    modelfile.write_checkpoint(factories.dcgan(np.random.default_rng(0)), tmp_path / "g.pt")
    assert run("convert", tmp_path / "g.pt", "--out", tmp_path / "m", "--config", config) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "m").exists()


def test_choice_lists_come_from_the_registries(capsys):
    from jaxrewrite import archs
    from jaxrewrite.rewrite import keys, update
    from jaxrewrite.worlds.protocol import VARIANTS

    assert run("edit", "--help") == 0 and run("eval", "--help") == 0 and run("convert", "--help") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(keys.KEY_METHODS) + "}" in out and "{" + ",".join(update.METHODS) + "}" in out
    assert "{" + ",".join(["auto", *archs.ARCHS]) + "}" in out and ", ".join(VARIANTS) in out
