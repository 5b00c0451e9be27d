"""Dotted-path helpers for nested parameter dicts (`layer6.sconv.mconv.dconv.kernel`)."""


def get(tree, path):
    for part in path.split("."):
        tree = tree[part]
    return tree


def flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unflatten(flat):
    tree = {}
    for path, v in flat.items():
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = v
    return tree


def replace(tree, path, value):
    """A new tree with the leaf at `path` replaced; untouched subtrees are shared, not copied."""
    head, _, rest = path.partition(".")
    return {**tree, head: replace(tree[head], rest, value) if rest else value}
