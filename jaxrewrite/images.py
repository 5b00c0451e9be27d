"""Generator output ([-1, 1] floats, NHWC) to files."""

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_write


def to_uint8(images):
    """[-1, 1] -> bytes as the official `renormalize.as_image`: x*127.5 + 127.5, clamped, truncated."""
    return np.clip(np.asarray(images, np.float32) * 127.5 + 127.5, 0, 255).astype(np.uint8)


def grid(images, cols=None):
    """Tile [N, H, W, C] images row-major into one [rows*H, cols*W, C] image."""
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    padded = np.zeros((rows * cols, h, w, c), images.dtype)
    padded[:n] = images
    return padded.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def dilate(mask, radius):
    """Square (Chebyshev) dilation of boolean [n, h, w] masks by `radius` pixels."""
    out = mask.copy()
    h, w = mask.shape[1:]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] |= \
                mask[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


GRID_SUFFIXES = (".png", ".jpg", ".jpeg")  # written as a grid of the images
SUFFIXES = (".npy",) + GRID_SUFFIXES


def check_path(path):
    if not str(path).lower().endswith(SUFFIXES):
        raise ValueError(f"{path}: output must end in .png, .jpg or .npy")


def label(tiles, labels):
    """uint8 tiles [N, H, W, 3] with each label written in its top-left corner (Pillow's own font)."""
    out = []
    for tile, text in zip(tiles, labels):
        im = Image.fromarray(tile)
        draw = ImageDraw.Draw(im)
        box = draw.textbbox((1, 0), text)
        draw.rectangle((0, 0, box[2] + 1, box[3] + 1), fill=(0, 0, 0))
        draw.text((1, 0), text, fill=(255, 255, 255))
        out.append(np.asarray(im))
    return np.stack(out)


def save(path, images, cols=None, labels=None):
    """`.npy`: the raw float32 NHWC array; `.png`/`.jpg`: a grid of the images, each with its
    label (such as its image number) where `labels` are given."""
    check_path(path)
    images, name = np.asarray(images, np.float32), str(path).lower()
    if name.endswith(".npy"):
        atomic_write(path, lambda f: np.save(f, images))
    else:
        tiles = to_uint8(images)
        tiles = label(tiles, labels) if labels is not None else tiles
        buf = io.BytesIO()
        Image.fromarray(grid(tiles, cols)).save(buf, format="PNG" if name.endswith(".png") else "JPEG")
        atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_losses(path, losses, title, size=(640, 360)):
    """A PNG line plot of a loss curve (Pillow only): steps on x, L1 on y, the first, last and
    lowest values written out."""
    losses = np.asarray(losses, np.float64)
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"{path}: the loss plot is a .png")
    w, h = size
    left, right, top, bottom = 60, 20, 30, 40
    im = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(im)
    lo, hi = float(losses.min()), float(losses.max())
    span = hi - lo or 1.0
    xs = left + (w - left - right) * np.arange(len(losses)) / max(len(losses) - 1, 1)
    ys = top + (h - top - bottom) * (hi - losses) / span
    draw.rectangle((left, top, w - right, h - bottom), outline=(0, 0, 0))
    if len(losses) > 1:
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(31, 119, 180), width=2)
    draw.text((left, 8), f"{title}: L1 {losses[0]:.4g} -> {losses[-1]:.4g} (lowest {lo:.4g})", fill=(0, 0, 0))
    draw.text((4, top - 4), f"{hi:.3g}", fill=(0, 0, 0))
    draw.text((4, h - bottom - 8), f"{lo:.3g}", fill=(0, 0, 0))
    draw.text((left, h - bottom + 6), "step 0", fill=(0, 0, 0))
    draw.text((w - right - 70, h - bottom + 6), f"step {len(losses) - 1}", fill=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
