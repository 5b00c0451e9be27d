"""The towns GAN trainer: a tiny config trains, resumes bit-for-bit, and exports a ProGAN
model file that the rest of the package samples and rewrites like an official one."""

import jax
import numpy as np
import pytest

from jaxrewrite import modelfile
from jaxrewrite.worlds import train_gan
from jaxrewrite.rewrite.rewriter import target_span

# The world's training tool, not the library: its runs (about a minute on 2 cores) are `slow`.
SLOW = pytest.mark.slow
TINY = dict(z_dim=8, widths=(8, 8, 8, 4, 4), d_widths=(8, 8, 8, 4, 4), batch=4, r1_every=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cfg = train_gan.config(**TINY)
    straight = tmp_path_factory.mktemp("a") / "state.msgpack"
    resumed = tmp_path_factory.mktemp("b") / "state.msgpack"
    exported = straight.parent / "g.msgpack"
    a = train_gan.train(str(straight), 3, cfg, str(exported), log_every=1)
    train_gan.train(str(resumed), 2, cfg)
    b = train_gan.train(str(resumed), 3, cfg, workers=2)  # real batches from worker processes
    return cfg, a, b, exported, straight


@SLOW
def test_resume_is_bit_for_bit(runs):
    _, a, b, _, _ = runs
    assert int(a["step"]) == int(b["step"]) == 3
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@SLOW
def test_training_moves_weights_and_ema_lags(runs):
    cfg, a, _, _, _ = runs
    init = train_gan.init_state(cfg)
    g0, g = (np.asarray(s["g"]["layer5"]["conv"]["kernel"]) for s in (init, a))
    ema = np.asarray(a["ema"]["layer5"]["conv"]["kernel"])
    assert np.abs(g - g0).max() > 0
    assert 0 < np.abs(ema - g0).max() < np.abs(g - g0).max()


@SLOW
def test_export_is_an_official_layout_proggan(runs):
    _, a, _, exported, _ = runs
    model = modelfile.load(exported)
    assert model.arch == "proggan" and model.config["training"]["step"] == 3
    gen = model.generator()
    assert [n for n in gen.names if n.endswith(".conv")] == [f"layer{i}.conv" for i in range(1, 11)] + ["output_64x64.conv"]
    images = np.asarray(gen(model.params, np.random.default_rng(0).standard_normal((2, 8), np.float32)))
    assert images.shape == (2, 64, 64, 3) and np.all(np.abs(images) <= 1)
    assert target_span(gen, "layer5") == ("layer5.conv", "layer5.conv")


@SLOW
def test_resume_refuses_another_config(runs):
    _, _, _, _, state = runs
    with pytest.raises(SystemExit, match="saved with config"):
        train_gan.train(str(state), 4, train_gan.config(**{**TINY, "batch": 8}))


@SLOW
def test_command_line_resumes_with_the_stored_config(runs, tmp_path):
    _, a, _, _, state = runs
    copy = tmp_path / "state.msgpack"
    copy.write_bytes(state.read_bytes())
    train_gan.main(["--state", str(copy), "--steps", "9", "--max-minutes", "0"])  # one step, then out of time
    assert train_gan.stored_config(str(copy)) == train_gan.config(**TINY)
    resumed = train_gan.load_state(str(copy), train_gan.config(**TINY))
    assert int(resumed["step"]) == int(a["step"]) + 1
    with pytest.raises(SystemExit, match="a resume keeps the stored config"):
        train_gan.main(["--state", str(copy), "--steps", "9", "--widths", "16,16,16,8,8"])


@pytest.mark.parametrize("batch", [0, 6])
def test_a_batch_the_discriminator_cannot_group_is_refused(tmp_path, batch):
    state = tmp_path / "state.msgpack"
    with pytest.raises(SystemExit, match=f"batch must be 1-4 or a multiple of 4 .*, got {batch}"):
        train_gan.main(["--state", str(state), "--steps", "1", "--batch", str(batch)])
    assert not state.exists()


@SLOW
@pytest.mark.parametrize("content", [b"garbage", b"", None])
def test_a_corrupt_state_file_is_one_line_error(runs, tmp_path, content):
    _, _, _, _, state = runs
    bad = tmp_path / "state.msgpack"
    bad.write_bytes(content if content is not None else state.read_bytes()[:1000])  # None: truncated
    with pytest.raises(SystemExit, match="not a training state file"):
        train_gan.main(["--state", str(bad), "--steps", "9"])


@SLOW
def test_a_resume_may_start_a_learning_rate_or_ema_phase(runs, tmp_path):
    _, a, _, _, state = runs
    copy = tmp_path / "state.msgpack"
    copy.write_bytes(state.read_bytes())
    train_gan.main(["--state", str(copy), "--steps", str(int(a["step"]) + 1), "--lr", "0.0005",
                    "--ema-images", "50000"])
    assert train_gan.stored_config(str(copy))["lr"] == 0.0005
    train_gan.main(["--state", str(copy), "--steps", str(int(a["step"]) + 2)])  # the phase's settings are kept
    assert train_gan.stored_config(str(copy))["lr"] == 0.0005
    assert train_gan.stored_config(str(copy))["ema_images"] == 50000
    assert int(train_gan.load_state(str(copy), train_gan.stored_config(str(copy)))["step"]) == int(a["step"]) + 2
