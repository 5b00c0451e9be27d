"""Atomic file writes: a failed write never leaves a partial file or clobbers the old one."""

import os
import tempfile


def atomic_write(path, write, mode="wb"):
    """Call `write(file)` on a temporary file beside `path`, flush it to disk, then rename it
    into place; on any error the temporary file is removed."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
