"""Atomic file writes: a failed write never leaves a partial file or clobbers the old one, and a
command's outputs appear together or not at all.

`atomic_write` writes to a temporary file beside the target, flushes it and renames it into
place. Inside `together()` the renames wait until the block ends without an error: a command
that writes a model, a grid and an artifacts file and then fails (or is interrupted) leaves
none of them. Caches write with `now=True`: what they hold stays valid whatever the command
that computed it does next.
"""

import contextlib
import contextvars
import os
import tempfile

_STAGED = contextvars.ContextVar("staged", default=None)  # [(temporary, target)] inside together()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, mode="wb", now=False):
    """Call `write(file)` on a temporary file beside `path`, flush it to disk, then rename it
    into place (at the end of the enclosing `together()` block, unless `now`); on any error
    the temporary file is removed and the error names `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    except OSError as e:
        raise OSError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        staged = _STAGED.get()
        if staged is None or now:
            os.replace(tmp, path)
        else:
            staged.append((tmp, path))
    except OSError as e:
        _remove(tmp)
        raise OSError(f"{path}: cannot write ({e.strerror or e})") from None
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def together():
    """Outputs written inside the block are moved into place when it ends without an error,
    and removed if it raises (KeyboardInterrupt included). Inside another `together()` block
    they join the outer one's."""
    if _STAGED.get() is not None:
        yield
        return
    staged = []
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise
    finally:
        _STAGED.reset(token)
    for i, (tmp, path) in enumerate(staged):
        try:
            os.replace(tmp, path)
        except OSError as e:  # the rest are not moved: remove them, and name the target
            for rest, _ in staged[i:]:
                _remove(rest)
            raise OSError(f"{path}: cannot write ({e.strerror or e})") from None


def _remove(tmp):
    if os.path.exists(tmp):
        os.unlink(tmp)
