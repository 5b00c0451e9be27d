"""Models known by name, so `--model towns64` works anywhere a model file does.

Shipped models live in the package (`jaxrewrite/assets/`) with their sha256, checked on
every load so a damaged install is caught instead of silently sampling garbage.
"""

import hashlib
import os
from importlib import resources

SHIPPED = {
    # name: (file under jaxrewrite/assets, sha256 of that file)
    "towns64": ("towns64.msgpack", None),
}


def asset(name):
    return resources.files("jaxrewrite") / "assets" / name


def resolve(model):
    """A path for `model`: an existing file as is, a shipped model's checked asset path."""
    if os.path.exists(model) or model not in SHIPPED:
        return model
    filename, sha256 = SHIPPED[model]
    path = str(asset(filename))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model}: shipped model file {filename} is missing from this install")
    if sha256 is not None:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != sha256:
            raise ValueError(f"{model}: {path} has sha256 {digest[:12]}..., expected {sha256[:12]}... (damaged install?)")
    return path


def shipped_edit(model, name):
    """Path of an edit file shipped for a model (`jaxrewrite/assets/edits/<model>/<name>.json`)."""
    return str(asset(f"edits/{model}/{name}.json"))
