"""The bad-input corpus: every command, given bad input, stops with exit status 2 and exactly one
line on stderr, no traceback, and no file created (or changed) under the working directory; and
a fuzz of the edit-file and checkpoint readers over random mutations of real files, where only
the documented errors may come out."""

import base64
import io
import json
import os

import numpy as np
import pytest
from conftest import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import checkpoints_convert
import factories
from checkpoints_convert import CheckpointError
from jaxrewrite import modelfile, zoo
from jaxrewrite.rewrite import editfile
from jaxrewrite.rewrite.editfile import EditFileError


def _mask(size=16, box=(4, 5, 9, 10)):
    m = np.zeros((size, size), bool)
    t, l, b, r = box
    m[t:b, l:r] = True
    return editfile.encode_mask(m)


def _json(path, obj):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The inputs, in the folder the commands then run in."""
    d = tmp_path_factory.mktemp("work")
    rng = np.random.default_rng(0)
    sd = factories.proggan(rng, (16, 32, 16, 16))
    modelfile.save(modelfile.convert(sd), d / "small.msgpack")
    modelfile.write_checkpoint(sd, d / "p.pt")
    sg = factories.stylegan2(np.random.default_rng(1), 16, 16, 1, {4: 16, 8: 16, 16: 8})
    modelfile.write_checkpoint({k: v for k, v in sg.items() if not k.startswith("noises.")}, d / "sg.pt")
    modelfile.write_checkpoint({**sd, "layer3.conv.weight": np.full_like(sd["layer3.conv.weight"], np.nan)}, d / "nan.pt")
    modelfile.write_checkpoint({k: v for k, v in sg.items() if k != "convs.1.conv.weight"}, d / "missing.pt")
    modelfile.write_checkpoint({**sd, "layer2.conv.weight": sd["layer2.conv.weight"][:, :, :2]}, d / "shape.pt")
    modelfile.write_checkpoint({**sd, "layer9.extra": np.zeros(2, np.float32)}, d / "extra.pt")
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(rng.bytes(2048))
    (d / "truncated.pt").write_bytes((d / "p.pt").read_bytes()[:3000])
    (d / "bad.npz").write_bytes(b"PK\x03\x04" + rng.bytes(100))
    (d / "evil.pt").write_bytes(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.")
    (d / "text.txt").write_text("not a model\n")
    (d / "folder").mkdir()
    url = _mask()
    good = {"object": [1, url], "paste": [2, url], "key": [[2, url]]}
    _json(d / "edit.json", good)
    _json(d / "malformed.json", '{"object": [1, ')
    _json(d / "list.json", [1, 2])
    _json(d / "noobject.json", {"paste": [2, url]})
    _json(d / "nopaste.json", {"object": [1, url], "key": [[2, url]]})
    _json(d / "emptymask.json", {**good, "paste": [2, editfile.encode_mask(np.zeros((16, 16)))]})
    _json(d / "negative.json", {**good, "object": [-1, url]})
    _json(d / "huge.json", {**good, "object": [10 ** 12, url]})
    _json(d / "int32.json", {**good, "paste": [2 ** 31, url]})
    _json(d / "float.json", {**good, "paste": [2.5, url]})
    _json(d / "base64.json", {**good, "paste": [2, "data:image/png;base64,a$bc"]})
    _json(d / "dataurl.json", {**good, "paste": [2, "http://example.com/m.png"]})
    _json(d / "notpng.json", {**good, "paste": [2, "data:image/png;base64," + base64.b64encode(b"junk").decode()]})
    _json(d / "emptykey.json", {**good, "key": []})
    _json(d / "foreign.json", {"12": {"value": 1, "intervention": 2}})
    _json(d / "badsetting.json", {**good, "jaxrewrite": {"layer": 5}})
    _json(d / "badrule.json", {**good, "jaxrewrite": {"layer": "layer5", "source": ["palm"], "target": ["spire"]}})
    faint = np.pad(np.ones((1, 1), np.uint8), ((0, 63), (0, 63)))  # one pixel at level 1 of 255: nothing at 8 x 8
    _json(d / "tiny.json", {**good, "key": [[2, editfile.encode_mask(faint)]]})
    (d / "latin.json").write_bytes(b'{"a": "\xe9"}')
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), 6)).save(d / "m.png")
    return d


CASES = [
    # convert
    (["convert", "nope.pt", "--out", "m.msgpack"], "nope.pt: no such file"),
    (["convert", "empty.pt", "--out", "m.msgpack"], "file is empty"),
    (["convert", "random.pt", "--out", "m.msgpack"], "random.pt"),
    (["convert", "truncated.pt", "--out", "m.msgpack"], "truncated.pt"),
    (["convert", "bad.npz", "--out", "m.msgpack"], "bad.npz"),
    (["convert", "evil.pt", "--out", "m.msgpack"], "refusing to unpickle global 'os.system'"),
    (["convert", "text.txt", "--out", "m.msgpack"], "text.txt"),
    (["convert", "p.pt", "--arch", "dcgan", "--out", "m.msgpack"], "this is not a dcgan state dict"),
    (["convert", "p.pt", "--arch", "biggan", "--out", "m.msgpack"], "invalid choice: 'biggan'"),
    (["convert", "p.pt", "--config", "{nope", "--out", "m.msgpack"], "--config is not JSON"),
    (["convert", "p.pt", "--config", "[1, 2]", "--out", "m.msgpack"], "config must be a JSON object"),
    (["convert", "p.pt", "--config", '{"lr_mlp": 0.1}', "--out", "m.msgpack"], "unknown config entry 'lr_mlp'"),
    (["convert", "sg.pt", "--config", '{"lr_mlp": "x"}', "--out", "m.msgpack"], "must be a number"),
    (["convert", "p.pt", "--out", "nodir/m.msgpack"], "does not exist"),
    (["convert", "p.pt", "--out", "folder"], "is a folder"),
    (["convert", "nan.pt", "--out", "m.msgpack"], "key 'layer3.conv.weight' has non-finite values"),
    (["convert", "missing.pt", "--out", "m.msgpack"], "missing key 'convs.1.conv.weight'"),
    (["convert", "shape.pt", "--out", "m.msgpack"], "key 'layer2.conv.weight' has shape (32, 32, 2, 3)"),
    (["convert", "extra.pt", "--out", "m.msgpack"], "unknown key 'layer9.extra'"),
    (["convert", "p.pt"], "the following arguments are required: --out"),
    # export
    (["export", "--model", "small.msgpack", "--out", "x.msgpack"], "must end in .pt, .pth, .npz, .pkl"),
    (["export", "--model", "small.msgpack", "--out", "x.pkl"], "only a model converted from an NVIDIA network pickle"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--out", "o.pkl"],
     "--out o.pkl: only a model converted from an NVIDIA network pickle"),
    (["export", "--model", "nope.msgpack", "--out", "x.pt"], "no such file"),
    (["export", "--model", "small.msgpack", "--out", "nodir/x.pt"], "does not exist"),
    # sample and layers
    (["sample", "--model", "small.msgpack", "--n", "0", "--out", "x.npy"], "must be an integer >= 1, got '0'"),
    (["sample", "--model", "small.msgpack", "--out", "x.gif"], "must end in .npy, .png, .jpg, .jpeg"),
    (["sample", "--model", "small.msgpack", "--out", "nodir/x.png"], "does not exist"),
    (["sample", "--model", "small.msgpack", "--numbers", "5-3", "--out", "x.png"], "expected image numbers"),
    (["sample", "--model", "small.msgpack", "--numbers", "abc", "--out", "x.png"], "expected image numbers"),
    (["sample", "--model", "small.msgpack", "--numbers", "2000000", "--out", "x.png"], "expected image numbers"),
    (["sample", "--model", "small.msgpack", "--batch-size", "two", "--out", "x.npy"], "--batch-size"),
    (["sample", "--model", "sg.pt", "--noise", "fixed", "--out", "x.npy"], "needs the checkpoint's noise buffers"),
    (["sample", "--model", "sg.pt", "--noise", "loud", "--out", "x.npy"], "invalid choice: 'loud'"),
    (["sample", "--model", "nan.pt", "--out", "x.npy"], "non-finite values"),
    (["sample", "--model", "towns65", "--out", "x.npy"], "towns65: no such file"),
    (["layers", "--model", "empty.pt"], "file is empty"),
    # edit: layers
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5.nonsense", "--out", "o.msgpack"],
     "'layer5.nonsense' is not a rewritable layer; rewritable: layer1"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5.relu", "--out", "o.msgpack"],
     "'layer5.relu' is not a rewritable layer"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5.up", "--out", "o.msgpack"],
     "'layer5.up' is not a rewritable layer"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer99", "--out", "o.msgpack"],
     "'layer99' is not a rewritable layer"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "output_16x16", "--out", "o.msgpack"],
     "'output_16x16' is not a rewritable layer"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5.conv:layer3.conv",
      "--out", "o.msgpack"], "'layer5.conv:layer3.conv' is not a rewritable layer"),
    # edit: requests
    (["edit", "--model", "small.msgpack", "--edit", "nope.json", "--layer", "layer5", "--out", "o.msgpack"],
     "nope.json: no such file"),
    (["edit", "--model", "small.msgpack", "--edit", "malformed.json", "--layer", "layer5", "--out", "o.msgpack"],
     "malformed JSON at line 1"),
    (["edit", "--model", "small.msgpack", "--edit", "latin.json", "--layer", "layer5", "--out", "o.msgpack"],
     "not UTF-8 text"),
    (["edit", "--model", "small.msgpack", "--edit", "list.json", "--layer", "layer5", "--out", "o.msgpack"],
     "expected a JSON object"),
    (["edit", "--model", "small.msgpack", "--edit", "noobject.json", "--layer", "layer5", "--out", "o.msgpack"],
     "missing 'object'"),
    (["edit", "--model", "small.msgpack", "--edit", "nopaste.json", "--layer", "layer5", "--out", "o.msgpack"],
     "missing 'paste'"),
    (["edit", "--model", "small.msgpack", "--edit", "emptymask.json", "--layer", "layer5", "--out", "o.msgpack"],
     "'paste': mask is empty"),
    (["edit", "--model", "small.msgpack", "--edit", "negative.json", "--layer", "layer5", "--out", "o.msgpack"],
     "image number must be >= 0, got -1"),
    (["edit", "--model", "small.msgpack", "--edit", "huge.json", "--layer", "layer5", "--out", "o.msgpack"],
     "image number must be <= 999,999, got 1,000,000,000,000"),
    (["edit", "--model", "small.msgpack", "--edit", "int32.json", "--layer", "layer5", "--out", "o.msgpack"],
     "image number must be <= 999,999"),
    (["edit", "--model", "small.msgpack", "--edit", "float.json", "--layer", "layer5", "--out", "o.msgpack"],
     "image number must be an integer, got 2.5"),
    (["edit", "--model", "small.msgpack", "--edit", "base64.json", "--layer", "layer5", "--out", "o.msgpack"],
     "mask has invalid base64"),
    (["edit", "--model", "small.msgpack", "--edit", "dataurl.json", "--layer", "layer5", "--out", "o.msgpack"],
     "mask is not a PNG data URL"),
    (["edit", "--model", "small.msgpack", "--edit", "notpng.json", "--layer", "layer5", "--out", "o.msgpack"],
     "mask data is not a readable image"),
    (["edit", "--model", "small.msgpack", "--edit", "emptykey.json", "--layer", "layer5", "--out", "o.msgpack"],
     "'key' must be a non-empty list"),
    (["edit", "--model", "small.msgpack", "--edit", "foreign.json", "--layer", "layer5", "--out", "o.msgpack"],
     "not an edit request"),
    (["edit", "--model", "small.msgpack", "--edit", "badsetting.json", "--out", "o.msgpack"],
     "'jaxrewrite' 'layer' must be a str, got 5"),
    (["edit", "--model", "small.msgpack", "--edit", "tiny.json", "--layer", "layer3", "--out", "o.msgpack"],
     "mask of image 2 is empty at the layer's resolution (8, 8)"),
    (["edit", "--model", "small.msgpack", "--layer", "layer5", "--out", "o.msgpack"], "give the request as --edit"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--out", "o.msgpack"], "give --layer"),
    (["edit", "--model", "small.msgpack", "--object", "x:m.png", "--paste", "2:m.png", "--layer", "layer5",
      "--out", "o.msgpack"], "expected N:mask.png"),
    (["edit", "--model", "small.msgpack", "--object", "1:none.png", "--paste", "2:m.png", "--layer", "layer5",
      "--out", "o.msgpack"], "none.png: cannot read"),
    (["edit", "--model", "small.msgpack", "--object", "1:text.txt", "--paste", "2:m.png", "--layer", "layer5",
      "--out", "o.msgpack"], "text.txt: mask file is not a readable image"),
    (["edit", "--model", "small.msgpack", "--paste", "2:m.png", "--layer", "layer5", "--out", "o.msgpack"],
     "missing 'object'"),
    # edit: options
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--lr", "-1", "--out",
      "o.msgpack"], "lr must be a finite number > 0, got -1.0"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--lr", "0", "--out",
      "o.msgpack"], "lr must be a finite number > 0"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--lr", "nan", "--out",
      "o.msgpack"], "lr must be a finite number > 0"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--rank", "0", "--out",
      "o.msgpack"], "--rank: must be an integer >= 1"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--niter", "0", "--out",
      "o.msgpack"], "--niter: must be an integer >= 1"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--rank", "500", "--out",
      "o.msgpack"], "rank 500 exceeds the 16 directions the key can have"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--key-method", "mean",
      "--rank", "2", "--out", "o.msgpack"], "key method 'mean' gives 1 direction(s): use rank 1"),
    (["edit", "--model", "sg.pt", "--edit", "edit.json", "--layer", "layer4", "--method", "closed",
      "--out", "o.msgpack"], "the closed method needs a linear target"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--method", "adam",
      "--out", "o.msgpack"], "invalid choice: 'adam'"),
    # edit: outputs
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--out", "nodir/o.msgpack"],
     "--out nodir/o.msgpack: folder"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--out", "folder"],
     "--out folder: is a folder"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--out", "o.msgpack",
      "--grid", "g.gif"], "--grid g.gif: must end in .png, .jpg, .jpeg"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--out", "o.msgpack",
      "--grid", "folder"], "--grid folder"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--out", "o.msgpack",
      "--artifacts", "a.txt"], "--artifacts a.txt: must end in .npz"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--out", "o.msgpack",
      "--save-edit", "nodir/e.json"], "--save-edit nodir/e.json: folder"),
    (["edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--out", "o.msgpack",
      "--plot", "p.jpg"], "--plot p.jpg: must end in .png"),
    # erase and zero
    (["erase", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--drank", "0", "--out",
      "o.msgpack"], "--drank: must be an integer >= 1"),
    (["erase", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--drank", "100", "--out",
      "o.msgpack"], "100 units to erase, the key has 16"),
    (["erase", "--model", "small.msgpack", "--edit", "noobject.json", "--layer", "layer5", "--out", "nodir/o.pt"],
     "does not exist"),
    (["zero", "--model", "small.msgpack", "--edit", "foreign.json", "--layer", "layer5", "--out", "o.msgpack"],
     "not an edit request"),
    (["zero", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--amount", "nan",
      "--out", "o.msgpack"], "amount must be finite"),
    (["zero", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--object", "1:m.png",
      "--out", "o.msgpack"], "unrecognized arguments: --object"),
    # finetune
    (["finetune", "--model", "small.msgpack", "--edit", "edit.json", "--lr", "-1", "--out", "o.msgpack"],
     "--lr must be a finite number > 0"),
    (["finetune", "--model", "small.msgpack", "--edit", "edit.json", "--niter", "0", "--out", "o.msgpack"],
     "--niter: must be an integer >= 1"),
    (["finetune", "--model", "small.msgpack", "--edit", "noobject.json", "--out", "o.msgpack"], "missing 'object'"),
    (["finetune", "--model", "small.msgpack", "--edit", "edit.json", "--out", "nodir/o.msgpack"], "does not exist"),
    (["finetune", "--model", "small.msgpack", "--edit", "edit.json", "--out", "o.msgpack", "--plot", "x.svg"],
     "--plot x.svg: must end in .png"),
    # eval, demo, zoo, the command itself
    (["eval", "--model", "small.msgpack", "--edit", "badrule.json", "--n", "4"], "not trained on it"),
    (["eval", "--model", "towns64", "--edit", "edit.json", "--n", "4"], "no 'jaxrewrite' entry"),
    (["eval", "--model", "towns64", "--edit", "badrule.json", "--n", "4"], "unknown class"),
    (["eval", "--model", "towns64", "--edit", "badrule.json", "--variants", "magic"], "unknown variant 'magic'"),
    (["eval", "--model", "towns64", "--edit", "badrule.json", "--json", "nodir/r.json"], "does not exist"),
    (["demo", "--out", "x.gif"], "--out x.gif: must end in .png, .jpg, .jpeg"),
    (["zoo", "fetch", "biggan"], "unknown zoo model 'biggan'"),
    (["zoo", "fetch"], "zoo fetch needs a model name"),
    (["zoo", "fetch", "dcgan-faces", "--wheel", "text.txt"], "is not the expected gan-face-generate==1.1.1 wheel"),
    (["paint"], "invalid choice: 'paint'"),
    (["--precision", "half", "sample"], "invalid choice: 'half'"),
]


def _tree(root):
    """Every file under `root` with its size and modification time."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            st_ = os.stat(path)
            out[os.path.relpath(path, root)] = (st_.st_size, st_.st_mtime_ns)
    return out


def test_the_corpus_is_large():
    assert len(CASES) >= 60 and len({tuple(argv) for argv, _ in CASES}) == len(CASES)
    commands = {argv[0] for argv, _ in CASES}
    assert {"convert", "export", "sample", "layers", "edit", "erase", "zero", "finetune", "eval", "demo",
            "zoo"} <= commands


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_exits_2_with_one_line_and_no_file(work, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(work)
    before = _tree(work)
    assert run(*argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxrewrite") and "error: " in lines[0] and message in lines[0], lines[0]
    assert "Traceback" not in err
    assert _tree(work) == before


def test_a_failure_after_the_work_leaves_no_output(work, monkeypatch, capsys, tmp_path):
    """The grid and the artifacts are written before the model; when the model cannot be
    written, neither is left (outputs are moved into place together)."""
    monkeypatch.chdir(tmp_path)
    for name in ("small.msgpack", "edit.json"):
        (tmp_path / name).write_bytes((work / name).read_bytes())
    from jaxrewrite import modelfile as mf

    def refuse(model, path):
        raise OSError(f"{path}: cannot write (disk full)")

    monkeypatch.setattr(mf, "save", refuse)
    assert run("edit", "--model", "small.msgpack", "--edit", "edit.json", "--layer", "layer5", "--niter", 3,
               "--stats-samples", 10, "--grid", "g.png", "--artifacts", "a.npz", "--plot", "l.png",
               "--out", "o.msgpack") == 2
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edit.json", "small.msgpack"]


def test_ctrl_c_is_one_line_and_exit_130(work, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    from jaxrewrite import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.pipeline, "edit", interrupted)
    assert run("edit", "--model", work / "small.msgpack", "--edit", work / "edit.json", "--layer", "layer5",
               "--out", "o.msgpack", "--grid", "g.png") == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["jaxrewrite: interrupted; nothing was written"] and list(tmp_path.iterdir()) == []


def test_a_rising_loss_is_saved_with_a_warning(work, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert run("edit", "--model", work / "small.msgpack", "--edit", work / "edit.json", "--layer", "layer5",
               "--lr", 1e6, "--niter", 5, "--stats-samples", 10, "--out", "o.msgpack", "--plot", "l.png") == 0
    err = capsys.readouterr().err
    assert "jaxrewrite: warning: the loss rose from" in err and "(--lr)" in err
    assert (tmp_path / "o.msgpack").exists() and Image.open(tmp_path / "l.png").size == (640, 360)


def test_a_corrupt_compiled_program_is_replaced(work, monkeypatch, capsys, tmp_path):
    """jax would warn about an unreadable cache entry on every run; it is removed, said once,
    and stored again."""
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "jaxrewrite", "sample", "--model", str(work / "small.msgpack"), "--n", "2",
           "--out", str(tmp_path / "x.npy")]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    programs = sorted((tmp_path / "cache" / "jaxrewrite" / "xla").iterdir())
    assert programs
    for p in programs:
        p.write_bytes(b"garbage")
    second = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "removed" in second.stderr and "Error reading" not in second.stderr
    third = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert third.returncode == 0 and third.stderr == ""
    assert all(p.stat().st_size > 100 for p in (tmp_path / "cache" / "jaxrewrite" / "xla").iterdir())


# --- the readers under random mutations of real files: only their documented errors come out

def _mutate(data, edits):
    data = bytearray(data)
    for kind, position, value in edits:
        i = position % (len(data) + 1)
        if kind == 0 and i < len(data):
            data[i] = value
        elif kind == 1:
            data[i:i] = bytes([value])
        elif i < len(data):
            del data[i]
    return bytes(data)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_fuzz_edit_file_reader(tmp_path_factory, edits):
    original = open(zoo.shipped_edit("towns64", "spire2tree"), "rb").read()
    path = tmp_path_factory.mktemp("fuzz") / "e.json"
    path.write_bytes(_mutate(original, edits))
    for kind in editfile.KINDS:
        try:
            editfile.read_edit(path, kind=kind)
        except EditFileError as e:
            assert "\n" not in str(e)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    sd = factories.proggan(np.random.default_rng(2), (8, 8, 8))
    out = []
    for legacy in (False, True):
        buf = io.BytesIO()
        checkpoints_convert.dump(sd, buf, name="p", legacy=legacy)
        out.append(buf.getvalue())
    return d, out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1), edits=EDITS)
def test_fuzz_checkpoint_reader(checkpoints, which, edits):
    folder, originals = checkpoints
    path = folder / "c.pt"
    path.write_bytes(_mutate(originals[which], edits))
    try:
        modelfile.load(path)
    except (CheckpointError, modelfile.ModelFileError) as e:  # a mutated first byte can make it look like a model file
        assert "\n" not in str(e).strip()


def test_outputs_appear_together_caches_at_once(tmp_path, monkeypatch):
    from jaxrewrite import atomic

    write = lambda name, now=False: atomic.atomic_write(tmp_path / name, lambda f: f.write(b"x"), now=now)
    with atomic.together():
        write("a")
        write("cache", now=True)  # a cache: in place at once
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".tmp-")) == ["cache"]
        with atomic.together():  # an inner block joins the outer one
            write("b")
        assert not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "cache"]
    real = os.replace

    def fail_on_d(src, dst):
        if str(dst).endswith("d"):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fail_on_d)
    with pytest.raises(OSError, match=r"/d: cannot write \(No space left on device\)"):
        with atomic.together():
            write("c")
            write("d")
            write("e")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "cache"]  # no temporaries left
