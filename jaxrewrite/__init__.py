"""jaxrewrite: rewriting a deep generative model (Bau et al., ECCV 2020) in JAX.

The public API: `load` a model (zoo name, model file or PyTorch checkpoint), build a
`Request` from masks, `edit` a layer with `EditOptions` (`suggest` says which layer and rank), `save` or `export`
the result.
"""

from .modelfile import Model, convert, export, load, save
from .models.sequential import Generator, Layer
from .rewrite.editfile import Request, read_edit, read_png_mask, write_edit
from .rewrite.pipeline import EditOptions, EditResult, compose, edit
from .rewrite.rewriter import Rewriter
from .rewrite.suggest import Suggestion, suggest
from .zdataset import z_dataset, z_for

__all__ = ["Model", "load", "save", "export", "convert", "Generator", "Layer", "Request", "read_edit",
           "read_png_mask", "write_edit", "EditOptions", "EditResult", "edit", "compose", "Rewriter",
           "suggest", "Suggestion",
           "z_dataset", "z_for"]
