"""`jaxrewrite.edit`, the one edit pipeline: copy-paste, erase and zero with every key and update
method; requests from numpy masks, PNG files and explicit z vectors, equal to their official
JSON; a precomputed C; bad requests and options stop before any work."""

import io

import numpy as np
import pytest
from PIL import Image

import factories
import jaxrewrite as jr
from jaxrewrite.rewrite import editfile, keys, update
from jaxrewrite.rewrite.artifacts import torch_layout
from jaxrewrite.rewrite.editfile import EditFileError, Request
from jaxrewrite.rewrite.rewriter import NotApplicable, Rewriter
from jaxrewrite.tree import flatten, get

OPTIONS = jr.EditOptions(niter=20, stats_samples=20)


@pytest.fixture(scope="module")
def model():
    return jr.convert(factories.proggan(np.random.default_rng(0), (16, 32, 16, 16)))  # 16 px, z 16


@pytest.fixture(scope="module")
def stylegan2():
    return jr.convert(factories.stylegan2(np.random.default_rng(1), 16, 16, 1, {4: 16, 8: 16, 16: 8}))


def box(t, l, b, r, size=16):
    m = np.zeros((size, size), bool)
    m[t:b, l:r] = True
    return m


def disk(cy, cx, radius, size):
    y, x = np.mgrid[:size, :size]
    return np.clip(radius + 0.5 - np.hypot(y - cy, x - cx), 0, 1)  # anti-aliased, like a brush


def request(**changes):
    """Bool masks at 16 px and float masks at 48 px (the masks' own resolution is free)."""
    entries = {"object": (1, disk(12, 12, 6, 48)), "paste": (2, box(6, 6, 12, 12)),
               "key": [(2, box(6, 6, 12, 12)), (3, disk(30, 20, 8, 48))]}
    return Request.from_arrays(**{**entries, **changes})


def changed_leaves(a, b):
    fa, fb = flatten(a.params), flatten(b.params)
    return [k for k in fa if not np.array_equal(fa[k], fb[k])]


def test_request_from_arrays_equals_its_official_json(model, tmp_path):
    req = request()
    back = jr.read_edit(jr.write_edit(req, tmp_path / "r.json"))
    a = jr.edit(model, "layer5", req, OPTIONS)
    b = jr.edit(model, "layer5", back, OPTIONS, rewriter=a.rewriter)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert isinstance(a, jr.EditResult) and a.losses.shape == (20,) and a.losses[-1] < a.losses[0]
    assert a.context.shape == (1, 16) and a.goal.box is not None and a.goal.units is None and a.seconds > 0
    assert a.weight_path == "layer5.conv.kernel" and changed_leaves(model, a.model) == ["layer5.conv.kernel"]
    assert a.options == OPTIONS and a.rewriter.layer == "layer5"


def test_mask_arrays_decode_as_the_official_json_would(tmp_path):
    """bool, float and uint8 masks become 8-bit levels whose resize is the official decoder's."""
    m = disk(20, 30, 9, 64)
    req = Request.from_arrays(paste=(4, m), key=[(4, m > 0), (5, np.round(m * 255).astype(np.uint8))])
    url = editfile.encode_mask(m)
    for size in ((8, 8), (16, 16), (5, 7), (64, 64)):
        np.testing.assert_array_equal(req.paste.weights(size), editfile.decode_mask(url, size))
    np.testing.assert_array_equal(req.key[1].mask, req.paste.mask)
    np.testing.assert_array_equal(req.key[0].weights(), (m > 0).astype(np.float32))
    for bad, message in ((np.zeros((4, 4)), "key\\[0\\]: mask is empty"), (np.full((4, 4), 2.0), "must lie in"),
                         (np.ones(4), "non-empty \\[H, W\\]")):
        with pytest.raises(EditFileError, match=message):
            Request.from_arrays(paste=(1, m), key=[(2, bad)])
    with pytest.raises(EditFileError, match="paste: image number must be >= 0"):
        Request.from_arrays(paste=(-3, m))


def test_z_vectors_equal_image_numbers(model):
    z = jr.z_for([1, 2, 3], 16, seed=1)
    by_number = jr.edit(model, "layer5", request(), OPTIONS)
    by_z = request(object=(z[0], disk(12, 12, 6, 48)), paste=(z[1], box(6, 6, 12, 12)),
                   key=[(z[1], box(6, 6, 12, 12)), (z[2], disk(30, 20, 8, 48))])
    result = jr.edit(model, "layer5", by_z, OPTIONS, rewriter=by_number.rewriter)
    np.testing.assert_array_equal(result.weight, by_number.weight)
    with pytest.raises(EditFileError, match="explicit z vector has no place in the official JSON"):
        editfile.to_json(by_z)
    with pytest.raises(ValueError, match="a z vector must have 16 entries"):
        jr.edit(model, "layer5", request(object=(np.zeros(5), box(1, 1, 5, 5))), OPTIONS, rewriter=result.rewriter)


def test_precomputed_c_matrix(model):
    computed = jr.edit(model, "layer5", request(), OPTIONS)
    given = jr.edit(model, "layer5", request(), OPTIONS, c_matrix=computed.rewriter.c_matrix)
    np.testing.assert_array_equal(given.weight, computed.weight)
    other = jr.edit(model, "layer5", request(), OPTIONS, c_matrix=np.eye(16))  # another C: another key
    assert not np.allclose(other.context, computed.context)
    with pytest.raises(ValueError, match="c_matrix is \\(8, 8\\), the layer's keys have 16 channels"):
        jr.edit(model, "layer5", request(), OPTIONS, c_matrix=np.eye(8))


@pytest.mark.parametrize("method", list(update.METHODS))
@pytest.mark.parametrize("key_method", list(keys.KEY_METHODS))
def test_every_method_and_key_through_the_pipeline(model, method, key_method):
    rank = 1 if key_method == "mean" else 2
    result = jr.edit(model, "layer5", request(), OPTIONS.replace(method=method, key_method=key_method, rank=rank))
    delta = np.asarray(result.weight - get(model.params, "layer5.conv.kernel"), np.float64)
    rows = delta.transpose(2, 0, 1, 3).reshape(16, -1).T  # input-channel rows
    np.testing.assert_allclose(rows @ result.context.T @ result.context, rows, atol=1e-5 * np.abs(rows).max())
    assert result.context.shape == (rank, 16) and np.abs(delta).max() > 0


def test_erase_and_full_rank(model):
    erase = jr.edit(model, "layer5", request(), OPTIONS.replace(kind="erase", drank=5))
    assert erase.goal.units.shape == (5,) and erase.goal.box is None and erase.losses[-1] < erase.losses[0]
    full = jr.edit(model, "layer5", request(), OPTIONS.replace(rank="full"))
    assert full.context.shape == (16, 16)
    s = np.linalg.svd(np.asarray(full.weight - get(model.params, "layer5.conv.kernel")).transpose(2, 0, 1, 3)
                      .reshape(16, -1), compute_uv=False)
    assert s[1] > 1e-2 * s[0]  # not confined to one direction


def test_closed_form_needs_a_linear_target(stylegan2):
    with pytest.raises(NotApplicable, match="the closed method needs a linear target"):
        jr.edit(stylegan2, "layer4", request(), OPTIONS.replace(method="closed"))
    result = jr.edit(stylegan2, "layer4", request(), OPTIONS.replace(method="lambda"))
    assert result.weight_path == "layer4.sconv.mconv.dconv.kernel"


@pytest.mark.parametrize("key_method,rank,amount", [("zca", 2, 0.0), ("svd", 1, 0.3), ("gandissect", 3, 0.5)])
def test_zero_is_the_official_algebra(model, key_method, rank, amount):
    """W <- W - P(W) + amount * P(1) along the context directions, computed here in the official
    OIHW layout with its own einsums (`projected_conv`)."""
    key_only = Request.from_arrays(key=[(2, box(6, 6, 12, 12)), (3, disk(30, 20, 8, 48))])
    options = jr.EditOptions(kind="zero", key_method=key_method, rank=rank, amount=amount, stats_samples=20)
    result = jr.edit(model, "layer5", key_only, options)
    assert result.goal is None and result.losses.shape == (0,)
    d = result.context.astype(np.float64)
    w0 = torch_layout(model, result.weight_path, get(model.params, result.weight_path)).astype(np.float64)

    def projected(w):
        return np.einsum("odyx,di->oiyx", np.einsum("oiyx,di->odyx", w, d), d)

    expected = w0 - projected(w0) + amount * projected(np.ones_like(w0))
    after = torch_layout(model, result.weight_path, result.weight)
    np.testing.assert_allclose(after, expected, atol=1e-6 * np.abs(w0).max())
    if key_method == "gandissect":  # one-hot rows: those input units are set to `amount`, the rest kept
        units = np.nonzero(d.sum(0))[0]
        assert len(units) == rank
        np.testing.assert_allclose(after[:, units], amount, atol=1e-6)
        rest = np.setdiff1d(np.arange(16), units)
        np.testing.assert_array_equal(after[:, rest], w0[:, rest].astype(np.float32))


def test_compose_applies_edits_in_turn(model):
    final, results = jr.compose(model, [("layer5", request(), OPTIONS), ("layer3", request(), OPTIONS)])
    assert changed_leaves(model, final) == ["layer3.conv.kernel", "layer5.conv.kernel"]
    assert results[1].rewriter.model is results[0].model  # the second edit starts from the first's model


@pytest.mark.parametrize("make,error,message", [
    (lambda m: jr.edit(m, "layer5", Request.from_arrays(paste=(2, box(6, 6, 12, 12))), OPTIONS),
     EditFileError, "missing 'object'"),
    (lambda m: jr.edit(m, "layer5", Request.from_arrays(object=(1, box(1, 1, 4, 4))), OPTIONS.replace(kind="erase")),
     EditFileError, "missing 'paste'"),
    (lambda m: jr.edit(m, "layer5", {"object": []}, OPTIONS), TypeError, "request must be a Request"),
    (lambda m: jr.EditOptions(kind="paint"), ValueError, "kind must be one of edit, erase, zero"),
    (lambda m: jr.EditOptions(method="sgd"), ValueError, "unknown method 'sgd'; choose from projected, lambda, lambda-dense, closed"),
    (lambda m: jr.EditOptions(key_method="pca"), ValueError, "unknown key method 'pca'"),
    (lambda m: jr.EditOptions(rank=0), ValueError, "rank must be an integer >= 1 or 'full'"),
    (lambda m: jr.EditOptions(niter=2.5), ValueError, "niter must be an integer >= 1"),
    (lambda m: jr.EditOptions(lr=-1.0), ValueError, "lr must be a finite number > 0"),
    (lambda m: jr.EditOptions(lr=float("nan")), ValueError, "lr must be a finite number > 0"),
    (lambda m: jr.edit(m, "layer5", request(), OPTIONS, rewriter=Rewriter(m, "layer3", stats_samples=20)),
     ValueError, "the rewriter is set up for 'layer3'"),
    (lambda m: jr.edit(m, "layer5", request(), OPTIONS.replace(stats_samples=30),
                       rewriter=Rewriter(m, "layer5", stats_samples=20)), ValueError, "other stats_samples"),
    (lambda m: jr.edit(m, "layer5", request(), OPTIONS, c_matrix=np.eye(16),
                       rewriter=Rewriter(m, "layer5", stats_samples=20)), ValueError, "not both"),
])
def test_bad_input_stops_with_one_line(model, make, error, message):
    with pytest.raises(error, match=message):
        make(model)


def test_official_defaults_once():
    o = jr.EditOptions()
    assert (o.kind, o.rank, o.method, o.key_method, o.niter, o.piter, o.lr, o.drank, o.stats_samples, o.seed) == \
        ("edit", 1, "projected", "zca", 2001, 10, 0.05, 30, 1000, 1)


def _png(array, mode):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_png_masks_red_channel_and_transparency():
    painted = box(2, 3, 6, 8, 10)
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[painted] = (200, 10, 10)  # the red channel, as the official decoder reads it
    np.testing.assert_array_equal(editfile.png_levels(_png(rgb, "RGB")), np.where(painted, 200, 0))
    white_on_clear = np.full((10, 10, 4), 255, np.uint8)  # a white brush on a transparent layer
    white_on_clear[..., 3] = np.where(painted, 255, 0)
    np.testing.assert_array_equal(editfile.png_levels(_png(white_on_clear, "RGBA")), np.where(painted, 255, 0))
    soft = white_on_clear.copy()
    soft[..., 3] = np.where(painted, 128, 0)  # half-covered: half selected
    np.testing.assert_array_equal(editfile.png_levels(_png(soft, "RGBA")), np.where(painted, 128, 0))
    la = np.stack([np.full((10, 10), 255, np.uint8), np.where(painted, 255, 0).astype(np.uint8)], -1)
    np.testing.assert_array_equal(editfile.png_levels(_png(la, "LA")), np.where(painted, 255, 0))
    grey = np.where(painted, 255, 0).astype(np.uint8)
    np.testing.assert_array_equal(editfile.png_levels(_png(grey, "L")), grey)
    with pytest.raises(EditFileError, match="mask file is not a readable image"):
        editfile.png_levels(b"not a png")


def test_warning_for_a_mask_that_selects_most_of_the_image():
    req = Request.from_arrays(object=(1, np.ones((8, 8), bool)), paste=(2, box(1, 1, 4, 4, 8)))
    assert req.warnings() == ["the object mask selects 100% of its image"]
    assert request().warnings() == []


@pytest.mark.parametrize("arch", ["proggan", "stylegan2"])
@pytest.mark.parametrize("method", ["projected", "lambda"])
def test_progress_reports_leave_the_weights_bit_for_bit(model, stylegan2, arch, method, capsys):
    """The bar (host callbacks from inside the loop) must not change what the loop computes:
    the command line, the UI (always reporting) and --quiet give the same model."""
    m, layer = (model, "layer5") if arch == "proggan" else (stylegan2, "layer4")
    options = OPTIONS.replace(method=method, niter=123)
    quiet = jr.edit(m, layer, request(), options)
    shown = jr.edit(m, layer, request(), options, show_progress=True)
    assert "123/123" in capsys.readouterr().err
    np.testing.assert_array_equal(quiet.weight, shown.weight)
    np.testing.assert_array_equal(quiet.losses, shown.losses)
