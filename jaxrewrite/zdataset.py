"""Image numbers: image `n` is row `n` of the official z data set for a seed."""

import numpy as np


def z_dataset(size, dim, seed=1):
    """Rows of `RandomState(seed).standard_normal(size*dim)` as float32 [size, dim], as the
    official `z_dataset_for_model` draws them; row n does not depend on `size`."""
    return np.random.RandomState(seed).standard_normal(size * dim).reshape(size, dim).astype(np.float32)


def z_for(image_numbers, dim, seed=1):
    numbers = np.asarray(image_numbers, dtype=np.int64)
    if numbers.size and numbers.min() < 0:
        raise ValueError(f"image numbers must be >= 0, got {numbers.min()}")
    return z_dataset(int(numbers.max()) + 1 if numbers.size else 0, dim, seed)[numbers]
