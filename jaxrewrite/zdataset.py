"""Image numbers: image `n` is row `n` of the official z data set for a seed."""

import numpy as np

# The largest image number: far beyond the official data sets (1000-10000 rows), and z rows
# are drawn in chunks, so reaching it costs seconds and megabytes, not the whole data set.
MAX_IMAGE_NUMBER = 999_999
_CHUNK = 1 << 20  # values per draw


def z_dataset(size, dim, seed=1):
    """Rows of `RandomState(seed).standard_normal(size*dim)` as float32 [size, dim], as the
    official `z_dataset_for_model` draws them; row n does not depend on `size`."""
    return np.random.RandomState(seed).standard_normal(size * dim).reshape(size, dim).astype(np.float32)


def parse_ranges(text, most=None):
    """'200-212,300' -> [200, ..., 212, 300], each within 0..MAX_IMAGE_NUMBER; with `most`, at
    most that many numbers (checked before a range is expanded). ValueError otherwise."""
    out = []
    for part in text.split(","):
        first, _, last = (t.strip() for t in part.partition("-"))
        if not (first.isdigit() and (last.isdigit() or not last)):
            raise ValueError(f"image numbers look like 200-212,300; got {text!r}")
        first, last = int(first), int(last or first)
        if last < first:
            raise ValueError(f"range {part.strip()!r} runs backwards")
        if most is not None and len(out) + last - first + 1 > most:
            raise ValueError(f"at most {most} images per request")
        if last > MAX_IMAGE_NUMBER:
            raise ValueError(f"image numbers run from 0 to {MAX_IMAGE_NUMBER:,}")
        out += range(first, last + 1)
    return out


def check_numbers(image_numbers):
    """The image numbers as int64, each within 0..MAX_IMAGE_NUMBER."""
    numbers = np.asarray(image_numbers, dtype=np.int64).reshape(-1)
    if numbers.size and numbers.min() < 0:
        raise ValueError(f"image numbers must be >= 0, got {numbers.min()}")
    if numbers.size and numbers.max() > MAX_IMAGE_NUMBER:
        raise ValueError(f"image numbers must be <= {MAX_IMAGE_NUMBER:,}, got {numbers.max():,}")
    return numbers


def z_for(image_numbers, dim, seed=1):
    """The z rows [len(image_numbers), dim] of these image numbers: the rows of `z_dataset`,
    drawn chunk by chunk (the generator's stream does not depend on how it is cut), keeping
    only the rows asked for."""
    numbers = check_numbers(image_numbers)
    out = np.empty((numbers.size, dim), np.float32)
    rng, rows = np.random.RandomState(seed), max(1, _CHUNK // max(dim, 1))
    for first in range(0, int(numbers.max()) + 1 if numbers.size else 0, rows):
        block = rng.standard_normal(rows * dim).reshape(rows, dim).astype(np.float32)
        hit = (numbers >= first) & (numbers < first + rows)
        out[hit] = block[numbers[hit] - first]
    return out
