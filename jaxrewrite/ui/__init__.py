"""A browser UI for rewriting (the official notebook's tools, offline): `jaxrewrite ui --model M`
serves it; in a notebook, `jaxrewrite.ui.show(model)` shows the same page."""

import os
import sys
from pathlib import Path

from .server import Server, is_loopback
from .session import Session


def start(model, *, name=None, host="127.0.0.1", port=0, workdir=".", cache_dir=None, label=None):
    """A UI Server for `model` (a Model, zoo name or path) running in a background thread;
    `port` 0 takes a free one. Its `url` is the page; `stop()` ends it."""
    from .. import modelfile

    folder = Path(workdir)
    if not folder.is_dir():
        raise ValueError(f"--workdir {workdir}: not a folder")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--workdir {workdir}: not writable")
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise ValueError(f"--port {port}: must be 0..65535")
    if not isinstance(model, modelfile.Model):
        name = name or Path(os.fspath(model)).stem  # a zoo name stays itself: its shipped edits are offered
        model = modelfile.load(model)
    session = Session(model, name=name or "model", workdir=folder, cache_dir=cache_dir, label=label)
    if not is_loopback(host):
        print(f"jaxrewrite: warning: serving on {host}: anyone who can reach it can edit the model and read and "
              f"write edit files in {folder.resolve()}", file=sys.stderr)
    return Server(session, host, port).start()


def show(model, *, width="100%", height=900, **kwargs):
    """The UI inside a Jupyter notebook: an IFrame of a server started in the background
    (the server object is kept as `.server` on the returned display object)."""
    server = start(model, **kwargs)
    try:
        from IPython.display import IFrame
    except ImportError:  # not in a notebook: the address to open
        print(f"jaxrewrite UI at {server.url}")
        return server
    frame = IFrame(server.url, width=width, height=height)
    frame.server = server
    return frame


__all__ = ["Server", "Session", "start", "show"]
