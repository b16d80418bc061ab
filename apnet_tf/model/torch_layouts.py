"""The PyTorch state_dict layouts that ``import-torch`` reads, recognised by their keys and shapes.

``LAYOUTS`` is the table: one ``Layout`` per ``--arch``, with every state_dict key and its shape
and the Keras model its tensors become. APOGEE Net III and BOSS Net (``bossnet_weights``) are
one entry each; a layout added later is one more. A file is read strictly, as the authors' own
``load_state_dict`` does: every key of the layout present with its shape, no key left over.

Two layouts can share their keys: the package's own ("apnet") has Net I's. A file that fits
several is the first of them in the table, the published one, unless the file says otherwise
(``save_torch`` marks its files and writes a sidecar); reading it as another needs
``force=True`` (``import-torch --force-arch``), since the same weights under another layout's
conventions give plausible, wrong numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from apnet_tf.constants import CONV_FILTERS, CONV_KERNEL, DENSE_UNITS
from apnet_tf.errors import ApnetError
from apnet_tf.model.bossnet_weights import bossnet_from_state, bossnet_shapes
from apnet_tf.model.network import build_model, flatten_length
from apnet_tf.model.published import METADATA_SIZES, build_published

__all__ = ["Layout", "LAYOUTS", "torch_shapes", "layout_difference", "recognise",
           "choose_layout", "check_state_dict"]


@dataclass(frozen=True)
class Layout:
    """One state_dict layout.

    ``shapes()``: key -> PyTorch shape, in the authors' key order. ``to_model(arrays, mean,
    std, input_scaling)``: the Keras model holding the checked arrays (``check_state_dict``);
    a published layout ignores the other three, its constants being its own.
    """

    arch: str
    title: str
    published: bool
    shapes: Callable[[], dict]
    to_model: Callable


def _trunk_shapes() -> dict[str, tuple[int, ...]]:
    shapes, c_in = {}, 1
    for i, c_out in enumerate(CONV_FILTERS, start=1):
        shapes[f"conv{i}.weight"], shapes[f"conv{i}.bias"] = (c_out, c_in, CONV_KERNEL), (c_out,)
        c_in = c_out
    return shapes


def _dense_shapes(flat: int) -> dict[str, tuple[int, ...]]:
    shapes, fc_in = {}, (flat, DENSE_UNITS, DENSE_UNITS)
    for i, (n_in, n_out) in enumerate(zip(fc_in, (DENSE_UNITS, DENSE_UNITS, 3)), start=1):
        shapes[f"fc{i}.weight"], shapes[f"fc{i}.bias"] = (n_out, n_in), (n_out,)
    return shapes


def _net1_shapes() -> dict[str, tuple[int, ...]]:
    return {**_trunk_shapes(), **_dense_shapes(CONV_FILTERS[-1] * flatten_length())}


def _net2_shapes() -> dict[str, tuple[int, ...]]:
    """Net II: the metadata.* photometry network comes before fc1 in the authors' order."""
    shapes, sizes = _trunk_shapes(), METADATA_SIZES
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        shapes[f"metadata.l{i}.weight"], shapes[f"metadata.l{i}.bias"] = (n_out, n_in), (n_out,)
    return {**shapes, **_dense_shapes(CONV_FILTERS[-1] * flatten_length() + sizes[-1])}


def _conv_dense_to_keras(state: dict) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> [kernel, bias] for the Net I / Net II / apnet key layout."""
    out = {}
    for i in range(1, len(CONV_FILTERS) + 1):
        w, b = state[f"conv{i}.weight"], state[f"conv{i}.bias"]
        # (out, in, k) -> (1, k, in, out): model.build_model writes each Conv1d as a (1, k) Conv2D
        out[f"conv{i}"] = [np.transpose(w, (2, 1, 0))[None], b]
    w1 = state["fc1.weight"]  # (512, 64 * 133 [+ 64]), the trunk flattened channel-major
    units, length, channels = w1.shape[0], flatten_length(), CONV_FILTERS[-1]
    trunk, extra = w1[:, :length * channels], w1[:, length * channels:]
    # Keras flattens (length, channels) row-major: row l * 64 + c holds PyTorch column c * 133 + l
    trunk = trunk.reshape(units, channels, length).transpose(2, 1, 0).reshape(-1, units)
    out["fc1"] = [np.concatenate([trunk, extra.T]), state["fc1.bias"]]  # photometry after
    for name in ("fc2", "fc3") + tuple(f"metadata.l{i}" for i in range(1, len(METADATA_SIZES))):
        if f"{name}.weight" in state:
            out[name.replace(".", "_")] = [state[f"{name}.weight"].T, state[f"{name}.bias"]]
    return out


def _filled(model, arrays: dict):
    for name, weights in _conv_dense_to_keras(arrays).items():
        model.get_layer(name).set_weights([np.asarray(w, np.float32) for w in weights])
    return model


def _published_model(arch: str) -> Callable:
    return lambda arrays, *_: _filled(build_published(arch), arrays)


def _boss_layout(arch: str, title: str) -> Layout:
    return Layout(arch, title, True, lambda: bossnet_shapes(arch),
                  lambda arrays, *_: bossnet_from_state(arrays, arch))


def _own_model(arrays, mean, std, input_scaling):
    return _filled(build_model(mean, std, input_scaling=input_scaling,
                               initializer="glorot_uniform"), arrays)


#: Every layout import-torch reads, the published ones first: a file whose keys and shapes fit
#: several is read as the first of them unless it says otherwise.
LAYOUTS = {layout.arch: layout for layout in (
    Layout("anet1", "APOGEE Net I", True, _net1_shapes, _published_model("anet1")),
    Layout("anet2", "APOGEE Net II", True, _net2_shapes, _published_model("anet2")),
    _boss_layout("anet3", "APOGEE Net III"),
    _boss_layout("bossnet", "BOSS Net"),
    Layout("apnet", "apnet-tf's own network", False, _net1_shapes, _own_model),
)}


def torch_shapes(arch: str = "anet1", layouts: dict | None = None,
                 ) -> dict[str, tuple[int, ...]]:
    """The PyTorch shape of every parameter of a layout, by state_dict key, in the authors'
    key order. ``layouts``: the table (default ``LAYOUTS``), here and below."""
    return (LAYOUTS if layouts is None else layouts)[arch].shapes()


def _shape(value) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(int(n) for n in shape)


def layout_difference(state: dict, arch: str, layouts: dict | None = None) -> str | None:
    """The first way the keys and shapes of ``state`` differ from layout ``arch`` ("no key
    fc3.bias", "unexpected key fc4.weight", "fc1.weight has shape (512, 8576), --arch anet1
    needs (512, 8512)"), or None when they are exactly the layout's."""
    shapes = torch_shapes(arch, layouts)
    for key, shape in shapes.items():
        if key not in state:
            return f"no key {key}"
        got = _shape(state[key])
        if got is not None and got != shape:
            return f"{key} has shape {got}, --arch {arch} needs {shape}"
    extra = [str(k) for k in state if k not in shapes]
    if extra:
        return f"unexpected key {extra[0]}" + (f" (and {len(extra) - 1} more)"
                                               if len(extra) > 1 else "")
    return None


def recognise(state: dict, layouts: dict | None = None) -> list[str]:
    """The layouts, in table order, whose keys and shapes ``state`` holds exactly."""
    layouts = LAYOUTS if layouts is None else layouts
    return [arch for arch in layouts if layout_difference(state, arch, layouts) is None]


def _closest(state: dict, layouts: dict) -> str:
    """The layout sharing the most keys with ``state`` (the first on a tie)."""
    keys = set(map(str, state))
    return max(layouts, key=lambda arch: len(keys & set(torch_shapes(arch, layouts))))


def _unknown(state: dict, source: str, layouts: dict) -> ApnetError:
    """The error for a ``state`` of no layout; a training checkpoint holding one is said so."""
    nested = [str(k) for k, v in state.items() if isinstance(v, dict)]
    if nested:
        keys = ", ".join(map(str, list(state)[:4])) + (", ..." if len(state) > 4 else "")
        return ApnetError(f"{source}: a checkpoint ({keys}), not a state_dict; save its "
                          f"{nested[0]!r} entry alone with torch.save and import that")
    near = _closest(state, layouts)
    return ApnetError(f"{source}: not a layout import-torch knows; closest is "
                      f"{_named(near, layouts)}, but {layout_difference(state, near, layouts)}")


def _named(arch: str, layouts: dict) -> str:
    return f"--arch {arch} ({layouts[arch].title})"


def choose_layout(state: dict, source: str, arch: str | None = None, force: bool = False,
                  layouts: dict | None = None) -> str:
    """The layout to read ``state`` as: ``arch`` if given, else the one its keys and shapes say.

    ``arch`` is refused when the file is not exactly that layout, and, unless ``force``, when
    the file is exactly an earlier layout in ``LAYOUTS`` too (Net I's keys read as apnet).

    Raises:
        ApnetError: naming ``source``, the first differing key and the layout the file is.
    """
    if not isinstance(state, dict):
        raise ApnetError(f"{source}: holds a {type(state).__name__}, not a state_dict (a dict "
                         "of named tensors, as torch.save(model.state_dict(), path) writes)")
    layouts = LAYOUTS if layouts is None else layouts
    if arch is not None and arch not in layouts:
        raise ApnetError(f"--arch {arch}: choose one of {', '.join(layouts)}")
    fits = recognise(state, layouts)
    if arch is None:
        if fits:
            return fits[0]
        raise _unknown(state, source, layouts)
    if arch not in fits:
        what = f"; its keys and shapes are those of {_named(fits[0], layouts)}" if fits else ""
        raise ApnetError(f"{source}: not --arch {arch}: "
                         f"{layout_difference(state, arch, layouts)}{what}")
    if fits[0] != arch and not force:
        raise ApnetError(f"{source}: its keys and shapes are those of {_named(fits[0], layouts)}"
                         f", and read as --arch {arch} it would give wrong numbers; leave --arch "
                         f"out, or add --force-arch if it really holds {layouts[arch].title} "
                         "weights")
    return arch


def check_state_dict(state: dict, source: str = "state_dict", arch: str = "anet1",
                     layouts: dict | None = None) -> dict[str, np.ndarray]:
    """The parameters of a state_dict of layout ``arch``: floating-point ones as float32, whole
    numbers (BatchNorm's ``num_batches_tracked``) as int64, every one checked.

    Raises:
        ApnetError: a key is missing or left over, or a parameter is not a tensor, has the
            wrong shape or holds NaN or infinity (the message names it).
    """
    diff = layout_difference(state, arch, layouts)
    if diff is not None:
        raise ApnetError(f"{source}: not --arch {arch}: {diff}")
    arrays, shapes = {}, torch_shapes(arch, layouts)
    for key, shape in shapes.items():
        value = state[key]
        try:
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            arr = arr.astype(np.int64 if arr.dtype.kind in "iub" else np.float32)
        except (TypeError, ValueError):
            raise ApnetError(f"{source}: {key} is a {type(value).__name__}, not a tensor") from None
        if arr.shape != shape:
            raise ApnetError(f"{source}: {key} has shape {tuple(arr.shape)}, --arch {arch} "
                             f"needs {shape}")
        if arr.dtype == np.float32 and not np.isfinite(arr).all():
            raise ApnetError(f"{source}: {key} holds {int((~np.isfinite(arr)).sum())} NaN or "
                             "infinite values")
        arrays[key] = arr
    return arrays
