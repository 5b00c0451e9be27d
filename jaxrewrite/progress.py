"""A minimal progress bar on stderr (no dependency): `for x in progress(xs, total, "stats"):`,
or `bar = Bar(total, "edit"); bar.update(done); bar.close()` where work reports its own steps
(the optimisation loops, from inside their compiled programs)."""

import contextlib
import sys
import time

_OPEN = []  # bars that have drawn a line and not finished it
_LISTENERS = []  # callbacks told of every bar's progress (a front end's display)


@contextlib.contextmanager
def listen(callback):
    """While inside, every bar also calls `callback(desc, done, total)` as it advances, so a
    front end (the browser UI) can show the work the library reports."""
    _LISTENERS.append(callback)
    try:
        yield
    finally:
        _LISTENERS.remove(callback)


def active():
    """Whether a bar's line is unfinished (a message printed now should start a new line)."""
    return bool(_OPEN)


class Bar:
    def __init__(self, total, desc, stream=None, width=30, every=0.25):
        self.total, self.desc, self.width, self.every = max(int(total), 1), desc, width, every
        self.stream = stream or sys.stderr
        self.start = self.last = time.time()
        self.done, self.drawn = 0, None

    def update(self, done, suffix=""):
        """Draw `done` of `total` (at most every `every` seconds, and always the last step)."""
        self.done = min(int(done), self.total)
        for callback in list(_LISTENERS):
            callback(self.desc, self.done, self.total)
        now = time.time()
        if self.done == self.drawn or (now - self.last < self.every and self.done < self.total):
            return
        self.drawn = self.done
        self.last = now
        frac = self.done / self.total
        bar = "#" * int(self.width * frac) + "-" * (self.width - int(self.width * frac))
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac else 0.0
        self.stream.write(f"\r{self.desc} [{bar}] {self.done}/{self.total} {elapsed:.0f}s eta {eta:.0f}s{suffix}")
        self.stream.flush()
        if self not in _OPEN:
            _OPEN.append(self)

    def close(self):
        if self in _OPEN:
            _OPEN.remove(self)
            self.stream.write("\n")
            self.stream.flush()


def progress(iterable, total, desc, stream=None, width=30):
    bar = Bar(total, desc, stream, width, every=0)
    try:
        for i, item in enumerate(iterable, start=1):
            yield item
            bar.update(i)
    finally:
        bar.close()
