"""The section 5.1 protocol end to end on a small random ProGAN (64 px, official layout):
every variant runs, ablations behave as their definitions say, and `jaxrewrite eval` reports
them; malformed rules fail with one line."""

import json

import jax
import numpy as np
import pytest

from jaxrewrite import cli, modelfile
from jaxrewrite.worlds import train_gan
from jaxrewrite.rewrite.editfile import Request, read_edit
from jaxrewrite.tree import get
from jaxrewrite.worlds import edits, protocol


def _box(t, l, b, r):
    m = np.zeros((64, 64))
    m[t:b, l:r] = 1
    return m


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol")
    params = train_gan.init_generator(jax.random.PRNGKey(3), 16, (16, 16, 16, 8, 8))
    model = modelfile.Model("proggan", jax.device_get(params), {"training": {"world": "towns"}})
    model_path = tmp / "tiny.msgpack"
    modelfile.save(model, model_path)
    edit = Request.from_arrays(object=(3, _box(20, 20, 36, 36)), paste=(1, _box(10, 30, 26, 46)),
                               key=[(1, _box(10, 30, 26, 46)), (2, _box(30, 10, 46, 26)), (4, _box(8, 8, 24, 24))])
    path = tmp / "rule.json"
    edits.write(edit, path, {"layer": "layer5", "kind": "edit", "source": ["sky_day", "sky_dusk"],
                             "target": ["spire", "dome"]})
    return model, model_path, path, tmp


def test_every_variant_runs_and_keeps_its_constraint(setup):
    model, _, path, tmp = setup
    w0 = get(model.params, "layer5.conv.kernel")
    deltas = {}
    for variant in ("ours", "lambda", "closed", "full-rank", "single-key"):
        edited, seconds, loss = protocol.apply(model, path, variant, niter=30, cache_dir=str(tmp))
        assert np.isfinite(loss) and seconds > 0
        flat = {k: v for k, v in edited.params.items() if k != "layer5"}
        assert all(np.array_equal(flat[k]["conv"]["kernel"], model.params[k]["conv"]["kernel"]) for k in flat)
        delta = np.asarray(get(edited.params, "layer5.conv.kernel")) - w0
        deltas[variant] = delta.reshape(-1, delta.shape[-2], delta.shape[-1]).transpose(1, 0, 2).reshape(delta.shape[-2], -1)
    for variant in ("ours", "lambda", "closed", "single-key"):  # rank 1: one input-channel direction
        s = np.linalg.svd(deltas[variant], compute_uv=False)
        assert s[1] < 1e-4 * s[0], variant
    s = np.linalg.svd(deltas["full-rank"], compute_uv=False)
    assert s[1] > 1e-2 * s[0]
    assert not np.allclose(deltas["ours"], deltas["single-key"])


def test_finetune_changes_every_layer(setup):
    model, _, path, _ = setup
    edited, _, loss = protocol.apply(model, path, "finetune", finetune_niter=5)
    assert np.isfinite(loss)
    names = sorted(model.params)
    assert len(names) == 11  # layer1..layer10, output_64x64
    for name in names:
        assert not np.array_equal(edited.params[name]["conv"]["kernel"], model.params[name]["conv"]["kernel"]), name


def test_diverged_finetuning_stops_with_an_error(setup):
    model, _, path, _ = setup
    with pytest.raises(FloatingPointError, match="fine-tuning diverged"):
        protocol.apply(model, path, "finetune", finetune_niter=3, finetune_lr=float("inf"))


def test_evaluate_rows_and_table(setup):
    model, _, path, tmp = setup
    rows = protocol.evaluate(model, path, ("ours", "finetune"), n=16, niter=20, finetune_niter=3, cache_dir=str(tmp))
    for row in rows.values():
        assert row["images"] == 16 and 0 <= row["effect"] <= 1 and row["collateral"] >= 0
    table = protocol.table(rows)
    assert table.count("\n") == 3 and "| ours |" in table and "| finetune |" in table


def test_eval_cli(setup, capsys):
    _, model_path, path, tmp = setup
    out = tmp / "rows.json"
    assert cli.main(["eval", "--model", str(model_path), "--edit", str(path), "--n", "8", "--niter", "10",
                     "--variants", "ours", "closed", "--cache", str(tmp), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert set(rows) == {"ours", "closed"} and "| closed |" in capsys.readouterr().out


def test_eval_cli_bad_input(setup, tmp_path, capsys):
    _, model_path, path, _ = setup
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "jaxrewrite"}))
    assert read_edit(plain)  # a valid official edit, but without a rule to evaluate
    broken = tmp_path / "broken.json"
    request = json.loads(path.read_text())
    broken.write_text(json.dumps({**request, "object": [request["object"][0], "data:image/png;base64,AAAA"]}))
    for edit, variant, message in ((plain, "ours", "no 'jaxrewrite' entry"), (path, "magic", "unknown variant"),
                                   (broken, "ours", "'object'")):  # not a row skipped: the file is wrong
        assert cli.main(["eval", "--model", str(model_path), "--edit", str(edit), "--n", "4", "--niter", "2",
                         "--variants", variant, "--cache", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_evaluate_skips_only_what_cannot_apply(setup, tmp_path):
    model, _, path, tmp = setup
    erase = tmp_path / "erase.json"
    request = json.loads(path.read_text())
    erase.write_text(json.dumps({**request, "jaxrewrite": {**request["jaxrewrite"], "kind": "erase", "drank": 4}}))
    rows = protocol.evaluate(model, erase, ("finetune", "ours"), n=4, niter=3, cache_dir=str(tmp))
    assert rows["finetune"] == {"skipped": "fine-tuning needs a copy-paste edit (object + paste)"}
    assert rows["ours"]["images"] == 4
