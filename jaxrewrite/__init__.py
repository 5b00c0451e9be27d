"""jaxrewrite: rewriting a deep generative model (Bau et al., ECCV 2020) in JAX."""

from .modelfile import Model, load, save
from .models.sequential import Generator, Layer
from .zdataset import z_dataset, z_for

__all__ = ["Model", "load", "save", "Generator", "Layer", "z_dataset", "z_for"]
