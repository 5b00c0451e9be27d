"""Named models: the shipped towns64 and the fetched third-party DCGAN faces.

The faces test needs the `gan-face-generate==1.1.1` wheel from the package registry; it
skips, saying so, only when the wheel cannot be downloaded (offline)."""

import zipfile

import numpy as np
from conftest import nchw, rel_err

import numpy_reference
from checkpoints_convert import read
from jaxrewrite import cli, modelfile, zoo
from jaxrewrite.zdataset import z_for


def test_fetch_converts_and_matches_a_numpy_forward(faces_wheel, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.main(["zoo", "fetch", "dcgan-faces", "--wheel", str(faces_wheel)]) == 0
    model = modelfile.load(zoo.resolve("dcgan-faces"))
    assert model.arch == "dcgan"
    n_params = sum(np.size(v) for layer in model.params.values() for p in layer.values() for v in (
        p.values() if isinstance(p, dict) else [p]))
    assert 3.5e6 < n_params < 3.7e6  # 3.58M weights + BatchNorm affine/statistics
    with zipfile.ZipFile(faces_wheel) as z:
        (tmp_path / "weights.tar").write_bytes(z.read(zoo.FETCHED["dcgan-faces"]["member"]))
    sd = read(str(tmp_path / "weights.tar"))["netG_state_dict"]
    z = z_for(range(4), 100, seed=1)
    images = np.asarray(model.generator()(model.params, z))
    assert rel_err(nchw(images), numpy_reference.dcgan(sd, z, [1, 2, 2, 2, 2], [0, 1, 1, 1, 1])) < 1e-4
    assert images.std() > 0.2  # BatchNorm in eval mode: faces, not flat grey


def test_fetch_refuses_a_wrong_wheel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fake = tmp_path / "gan_face_generate-1.1.1-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("gan_face_generate/weights.tar", b"not weights")
    assert cli.main(["zoo", "fetch", "dcgan-faces", "--wheel", str(fake)]) == 2
    assert "is not the expected gan-face-generate==1.1.1 wheel" in capsys.readouterr().err
    assert not (tmp_path / "jaxrewrite").exists()


def test_unfetched_and_unknown_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.main(["sample", "--model", "dcgan-faces", "--out", str(tmp_path / "x.png")]) == 2
    assert "run `jaxrewrite zoo fetch dcgan-faces`" in capsys.readouterr().err
    assert cli.main(["zoo", "fetch", "stylegan9"]) == 2
    assert "unknown zoo model 'stylegan9'" in capsys.readouterr().err
