"""Architectures by name: everything jaxrewrite knows of one is said here, once.

An `Arch` ties a generator builder (`jaxrewrite/models/`) to its state-dict layout
(`checkpoints_convert/`: names, detection, shapes) and says what the rest of the library asks
of an architecture: where a block's rewrite target ends, which generator options it takes,
which options reproduce the official code, which parameters are buffers that fine-tuning
leaves alone, and which config entries a user may set. The converter, the model file, the
rewriter, fine-tuning and the command line's choice lists all read `ARCHS`; adding an
architecture is a model module, a layout module and one entry below.
"""

from dataclasses import dataclass, field
from typing import Any, Callable

from checkpoints_convert import dcgan as dcgan_layout
from checkpoints_convert import proggan as proggan_layout
from checkpoints_convert import stylegan2 as stylegan2_layout
from checkpoints_convert import stylegan2_ada as stylegan2_ada_layout

from .models import dcgan, proggan, stylegan2


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable  # (params, config, **options) -> Generator
    layout: Any  # checkpoints_convert layout module: RULES, detect, renamer, spec, default_config
    # The last layer of a block's rewrite target, after its convolution ("activate": the conv
    # through the activation, nonlinear in the weight); None: the bare convolution (linear).
    target_end: str | None = None
    options: tuple = ()  # keyword options of `build` (the command line passes only these)
    official: Callable[[int], dict] = lambda batch: {}  # options of the official code at `batch` images per call
    frozen: tuple = ()  # parameter path fragments of buffers: fine-tuning leaves them fixed
    config: dict = field(default_factory=dict)  # config entries a user may set -> float (a number) or list (of ints)


def _stylegan2_official(batch):
    return {"noise": "official", "noise_batch": batch}


ARCHS = {a.name: a for a in (
    Arch("stylegan2", stylegan2.build, stylegan2_layout, target_end="activate",
         options=("noise", "noise_batch", "truncation"), official=_stylegan2_official,
         frozen=("noises.", "latents.", ".blur.", "up_rgb"), config={"lr_mlp": float}),
    # NVIDIA's StyleGAN2-ADA network pickles, in the same sequential form; its noise is the
    # stored `noise_const` (NVIDIA's 'const' mode), fp16 blocks run in float32
    Arch("stylegan2-ada", stylegan2.build, stylegan2_ada_layout, target_end="activate",
         options=("noise", "noise_batch", "truncation", "truncation_cutoff", "label"),
         official=lambda batch: {"noise": "fixed"},
         frozen=("noises.", "latents.", ".blur.", "up_rgb"), config={"lr_mlp": float}),
    Arch("proggan", proggan.build, proggan_layout),
    Arch("dcgan", dcgan.build, dcgan_layout, frozen=(".bn.mean", ".bn.var"),
         config={"strides": list, "paddings": list, "bn_eps": float}),
)}

LAYOUTS = {name: a.layout for name, a in ARCHS.items()}


def get(name):
    """The `Arch` called `name`; an unknown name is an error listing the known ones."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHS)}")
    return ARCHS[name]
