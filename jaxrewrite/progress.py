"""A minimal progress bar on stderr (no dependency): `for x in progress(xs, total, "stats"):`."""

import sys
import time


def progress(iterable, total, desc, stream=None, width=30):
    stream = stream or sys.stderr
    start = time.time()
    for i, item in enumerate(iterable, start=1):
        yield item
        frac = i / max(total, 1)
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        elapsed = time.time() - start
        eta = elapsed / frac - elapsed if frac else 0.0
        stream.write(f"\r{desc} [{bar}] {i}/{total} {elapsed:.0f}s eta {eta:.0f}s")
        stream.flush()
    stream.write("\n")
