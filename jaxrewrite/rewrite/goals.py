"""Goals of a rewrite: the (goal_in, goal_out) pair the target layer must map between.

Copy: cut the object's value features out of one image; paste them, alpha-blended by the
mask, centred on another image's paste mask; with tight paste, crop both the key input and
the pasted value map to the pasted box. Erase: the value the layer would produce if the most
distinctive key units of the context were zero. Bags are NHWC; boxes are (top, left, bottom,
right) with exclusive bottom/right, in feature-map pixels.
"""

import numpy as np

from .keys import top_units


def bounding_box(mask):
    """Box of mask > 0, or None for an empty mask."""
    rows, cols = np.nonzero(np.asarray(mask) > 0)
    if rows.size == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _box(mask, what):
    box = bounding_box(mask)
    if box is None:
        raise ValueError(f"{what} mask is empty at the layer's resolution")
    return box


def cut_object(values, mask):
    """(clip [1, h, w, C], clip mask [h, w], box) of the object's value features."""
    t, l, b, r = _box(mask, "object")
    return values[:, t:b, l:r], np.asarray(mask)[t:b, l:r], (t, l, b, r)


def paste(values, clip, clip_mask, paste_mask):
    """values with the clip blended in, centred on the paste mask's box (clamped inside)."""
    t, l, b, r = _box(paste_mask, "paste")
    centre = ((t + b) // 2, (l + r) // 2)
    size, extent = clip.shape[1:3], values.shape[1:3]
    top, left = (max(0, min(e - s, c - s // 2)) for s, c, e in zip(size, centre, extent))
    box = (top, left, top + size[0], left + size[1])
    a = np.asarray(clip_mask, np.float32)[None, :, :, None]
    region = values[:, box[0]:box[2], box[1]:box[3]]
    out = np.array(values, copy=True)
    out[:, box[0]:box[2], box[1]:box[3]] = (1 - a) * region + a * clip
    return out, box


def crop_boxes(key_shape, value_shape, box):
    """The value box rounded outward to whole key pixels: (key box, value box)."""
    vr, hr = value_shape[0] // key_shape[0], value_shape[1] // key_shape[1]
    t, l, b, r = box
    kt, kl, kb, kr = t // vr, l // hr, -(-b // vr), -(-r // hr)
    return (kt, kl, kb, kr), (kt * vr, kl * hr, kb * vr, kr * hr)


def crop_bag(bag, fmap, box, origin=None):
    """A copy of `bag` with `fmap` replaced, and the running RGB image (StyleGAN2) cut to
    `box` as the official `merge_target_output` does. `origin`: where the target's output of
    the cropped input starts in the full map (value pixels), so that stored noise buffers
    ('fixed' noise) are cut to the same place."""
    out = {**bag, "fmap": fmap}
    if "output" in bag:
        t, l, b, r = box
        out["output"] = bag["output"][:, t:b, l:r]
    if origin is not None:
        out["noise_origin"] = np.asarray(origin, np.int32)
    return out


def copy_paste(ctx_bag, value_bag, obj_values, obj_mask_v, paste_mask_v):
    """goal_in, goal_out (both cropped to the paste box: the official tight paste), full pasted
    value map, paste box (value resolution)."""
    clip, clip_mask, _ = cut_object(obj_values, obj_mask_v)
    pasted, box = paste(np.asarray(value_bag["fmap"]), clip, clip_mask, paste_mask_v)
    keys = np.asarray(ctx_bag["fmap"])
    (kt, kl, kb, kr), (vt, vl, vb, vr) = crop_boxes(keys.shape[1:3], pasted.shape[1:3], box)
    goal_in = crop_bag(ctx_bag, keys[:, kt:kb, kl:kr], (kt, kl, kb, kr), origin=(vt, vl))
    goal_out = crop_bag(value_bag, pasted[:, vt:vb, vl:vr], (vt, vl, vb, vr))
    return goal_in, goal_out, pasted, box


def erase_units(examples, unit_mean_square, drank):
    """The `drank` key units with the highest mask-weighted mean of k² / E[k²] (descending)."""
    return top_units(examples, lambda keys: keys ** 2 / np.asarray(unit_mean_square, np.float64), drank)
