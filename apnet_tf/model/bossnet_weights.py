"""The authors' APOGEE Net III / BOSS Net weights into the Keras model of ``bossnet``: their
state_dict layout, checked key by key, and their folder of byte chunks.

The weights come as one ``torch.save`` file of the state_dict, or as the authors' folder
(``bossnet/model_apogee/``, ``model_boss/``) of ``model_chunk_0 .. model_chunk_N``: the bytes of
that file cut in pieces, joined in numeric order. Their loaders read exactly ten chunks and load
with ``strict=False``; here every key and shape is checked (``check_bossnet_state``) and any
missing or unknown key is an error naming the first. PyTorch ``Conv1d`` kernels (out, in, k)
become Keras ``Conv1D`` kernels (k, in, out), ``Linear`` weights (out, in) Dense kernels
(in, out); the flatten stays channel-major (``bossnet`` permutes before it), so the first Dense
kernel is the transposed PyTorch weight. Importing this module does not import PyTorch.
"""

from __future__ import annotations

import io
import os
import re

import keras
import numpy as np

from apnet_tf.constants import TARGETS, TORCH_MISSING
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.model.bossnet import BOSS_ARCHS, CONVENTIONS, DIM_MULTS, build_bossnet
from apnet_tf.model.bossnet_conventions import conventions, training_range

__all__ = [
    "CHUNK_PATTERN", "bossnet_shapes", "check_bossnet_state", "bossnet_from_state",
    "keras_to_bossnet_state", "read_chunk_folder", "load_bossnet_state", "bossnet_record",
]

#: A chunk of the authors' weight folders: model_chunk_<index>.
CHUNK_PATTERN = re.compile(r"^model_chunk_(\d+)$")
_BN = ("weight", "bias", "running_mean", "running_var")
_KERAS_BN = ("gamma", "beta", "moving_mean", "moving_variance")


def _bn_keys(prefix: str, channels: int) -> dict:
    shapes = {f"{prefix}.{p}": (channels,) for p in _BN}
    shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def bossnet_shapes(arch: str = "anet3", pool_size: int = 1024,
                   linear_dim: int = 1024) -> dict[str, tuple[int, ...]]:
    """The shape of every state_dict entry of the authors' BossNet, by key, in their order
    (``num_batches_tracked``: an int64 scalar; ``pos_enc.inv_freq``: the position buffer)."""
    if arch not in BOSS_ARCHS:
        raise ValueError(f"arch {arch!r} is not one of {BOSS_ARCHS}")
    dims = [4 * m for m in DIM_MULTS]
    shapes = {"pos_enc.inv_freq": (1,), "first_conv.conv_layer.weight": (dims[0], 2, 30),
              "first_conv.conv_layer.bias": (dims[0],), **_bn_keys("first_conv.bn", dims[0])}
    for k, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
        shapes[f"res_blocks.{k}.conv1.weight"] = (c_out, c_in, 30)
        shapes.update(_bn_keys(f"res_blocks.{k}.bn1", c_out))
        shapes[f"res_blocks.{k}.conv2.weight"] = (c_out, c_out, 30)
        shapes.update(_bn_keys(f"res_blocks.{k}.bn2", c_out))
    n_in = dims[-1] * pool_size
    for i in range(6):
        shapes[f"linear_sequential.{i}.linear_layer.weight"] = (linear_dim, n_in)
        shapes[f"linear_sequential.{i}.linear_layer.bias"] = (linear_dim,)
        n_in = linear_dim
    n_out = 3 if arch == "anet3" else 4
    shapes["linear_sequential.6.weight"] = (n_out, linear_dim)
    shapes["linear_sequential.6.bias"] = (n_out,)
    return shapes


def _hint(state: dict, arch: str) -> str:
    rows = (tuple(getattr(state.get("linear_sequential.6.bias"), "shape", ())) or (None,))[0]
    if arch == "anet3" and rows == 4:
        return " (4 outputs: BOSS Net weights? use --arch bossnet)"
    if arch == "bossnet" and rows == 3:
        return " (3 outputs: APOGEE Net III weights? use --arch anet3)"
    if any(str(k).startswith(("conv1.", "fc1.")) for k in state):
        return " (an APOGEE Net I or II state_dict? use --arch anet1 or anet2)"
    return ""


def _array(value, key: str, source: str) -> np.ndarray:
    try:
        return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    except (TypeError, ValueError):
        raise ApnetError(f"{source}: {key} is a {type(value).__name__}, not a tensor") from None


def check_bossnet_state(state, arch: str = "anet3", source: str = "state_dict", **sizes,
                        ) -> dict[str, np.ndarray]:
    """The entries of an APOGEE Net III ("anet3") or BOSS Net ("bossnet") state_dict as numpy
    arrays (float32; ``num_batches_tracked`` as int64), every one checked. ``sizes``:
    ``pool_size`` and ``linear_dim`` of ``bossnet_shapes`` (small test models).

    Raises:
        ApnetError: ``state`` is not a mapping of names to tensors, or a key is unknown or
            missing, an entry has the wrong shape, or holds NaN or infinity (the message names
            the first).
    """
    if not isinstance(state, dict):
        raise ApnetError(f"{source}: holds a {type(state).__name__}, not a state_dict (a dict "
                         "of named tensors, as torch.save(model.state_dict(), path) writes)")
    shapes, hint = bossnet_shapes(arch, **sizes), _hint(state, arch)
    unknown = [k for k in state if k not in shapes]
    if unknown:
        raise ApnetError(f"{source}: unexpected key {unknown[0]} for --arch {arch}{hint}")
    missing = [k for k in shapes if k not in state]
    if missing:
        raise ApnetError(f"{source}: no key {missing[0]} for --arch {arch}{hint}")
    out = {}
    for key, shape in shapes.items():
        arr = _array(state[key], key, source)
        if arr.shape != shape:
            raise ApnetError(f"{source}: {key} has shape {tuple(arr.shape)}, --arch {arch} "
                             f"needs {shape}{hint}")
        if key.endswith("num_batches_tracked"):
            out[key] = arr.astype(np.int64)
            continue
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ApnetError(f"{source}: {key} holds {int((~np.isfinite(arr)).sum())} NaN or "
                             "infinite values")
        out[key] = arr
    return out


def _layer_arrays(arrays: dict, n_blocks: int) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, from checked state_dict arrays."""
    out = {"first_conv": [arrays["first_conv.conv_layer.weight"].transpose(2, 1, 0),
                          arrays["first_conv.conv_layer.bias"]],
           "first_bn": [arrays[f"first_conv.bn.{p}"] for p in _BN]}
    for k in range(n_blocks):
        for j in (1, 2):
            out[f"res{k}_{j}_conv"] = [arrays[f"res_blocks.{k}.conv{j}.weight"].transpose(2, 1, 0)]
            out[f"res{k}_{j}_bn"] = [arrays[f"res_blocks.{k}.bn{j}.{p}"] for p in _BN]
    for i in range(7):
        stem = f"linear_sequential.{i}" + (".linear_layer" if i < 6 else "")
        out[f"linear{i}"] = [arrays[f"{stem}.weight"].T, arrays[f"{stem}.bias"]]
    return out


def bossnet_from_state(state, arch: str = "anet3", source: str = "state_dict",
                       **sizes) -> keras.Model:
    """``bossnet.build_bossnet(arch)`` holding the weights of the authors' state_dict (after
    ``check_bossnet_state``); its position channel uses the file's ``pos_enc.inv_freq``."""
    arrays = check_bossnet_state(state, arch, source, **sizes)
    model = build_bossnet(arch, inv_freq=float(arrays["pos_enc.inv_freq"][0]), **sizes)
    for name, weights in _layer_arrays(arrays, len(DIM_MULTS) - 1).items():
        model.get_layer(name).set_weights([np.ascontiguousarray(w, np.float32) for w in weights])
    return model


def keras_to_bossnet_state(model: keras.Model) -> dict[str, np.ndarray]:
    """The reverse of ``bossnet_from_state``: numpy arrays under the authors' keys (their
    class loads them with ``strict=True``; ``num_batches_tracked`` is 0)."""
    state = {"pos_enc.inv_freq": np.array([model.get_layer("position").inv_freq], np.float32)}
    prefixes = {"first_conv": "first_conv.conv_layer", "first_bn": "first_conv.bn"}
    for k in range(len(DIM_MULTS) - 1):
        for j in (1, 2):
            prefixes[f"res{k}_{j}_conv"] = f"res_blocks.{k}.conv{j}"
            prefixes[f"res{k}_{j}_bn"] = f"res_blocks.{k}.bn{j}"
    for i in range(7):
        prefixes[f"linear{i}"] = f"linear_sequential.{i}" + (".linear_layer" if i < 6 else "")
    for name, prefix in prefixes.items():
        weights = model.get_layer(name).get_weights()
        if name.endswith("_bn"):
            state.update({f"{prefix}.{p}": w for p, w in zip(_BN, weights)})
            state[f"{prefix}.num_batches_tracked"] = np.array(0, np.int64)
        else:
            kernel = weights[0].transpose(2, 1, 0) if weights[0].ndim == 3 else weights[0].T
            state[f"{prefix}.weight"] = np.ascontiguousarray(kernel)
            if len(weights) > 1:
                state[f"{prefix}.bias"] = weights[1]
    return state


def read_chunk_folder(folder: str) -> bytes:
    """The bytes of the authors' weight folder: ``model_chunk_0 .. model_chunk_N`` joined in
    numeric order (every chunk present, whatever N; their loaders take exactly ten).

    Raises:
        ApnetError: no chunk in the folder, or a gap in the numbering (naming the first missing).
    """
    found = {}
    for name in os.listdir(folder):
        match = CHUNK_PATTERN.match(name)
        if match:
            found[int(match.group(1))] = os.path.join(folder, name)
    if not found:
        raise ApnetError(f"{folder}: no model_chunk_0 .. model_chunk_N files (the authors' "
                         "weight folder, e.g. bossnet/model_apogee/)")
    gaps = sorted(set(range(max(found) + 1)) - set(found))
    if gaps:
        raise ApnetError(f"{folder}: model_chunk_{gaps[0]} is missing (chunks 0 to "
                         f"{max(found)} must all be there)")
    parts = []
    for i in range(len(found)):
        with open(found[i], "rb") as f:
            parts.append(f.read())
    return b"".join(parts)


def load_bossnet_state(path: str) -> dict:
    """The state_dict in ``path``: a ``torch.save`` file or the authors' chunk folder, loaded
    with ``weights_only=True``.

    Raises:
        ApnetError: PyTorch is missing, the path does not exist, or it holds no loadable file.
    """
    try:
        import torch
    except ImportError:
        raise ApnetError(TORCH_MISSING) from None
    if not os.path.exists(path):
        raise ApnetError(f"{path}: no such file or folder")
    source = io.BytesIO(read_chunk_folder(path)) if os.path.isdir(path) else path
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ApnetError(f"{path}: cannot load a PyTorch state_dict "
                         f"({first_line(exc)})") from None
    return dict(state.state_dict() if hasattr(state, "state_dict") else state)


def bossnet_record(model: keras.Model, path: str, arch: str, convention: str | None = None,
                   ) -> tuple[dict, dict]:
    """What ``torch_weights.import_torch`` writes beside the Keras ``model`` of APOGEE Net III
    or BOSS Net weights read from ``path`` (a ``torch.save`` file or the authors' chunk folder):
    its normalization.json (the linear constants, and the training label range of the authors'
    stats files as min and max) and run.json (the conventions of ``convention``, astra's by
    default).

    Raises:
        ApnetError: an unknown convention.
    """
    convention = "astra" if convention is None else convention
    if convention not in CONVENTIONS:
        raise ApnetError(f"--convention {convention}: choose one of {', '.join(CONVENTIONS)}")
    labels = model.get_layer("labels")
    low, high = training_range(arch)
    norm = {"targets": list(TARGETS), "mean": labels.mean[:3], "std": labels.std[:3],
            "min": low, "max": high, "source": os.path.abspath(path)}
    record = {"format": 1, "stages": ["import-torch"], "arch": arch,
              "source": os.path.abspath(path), "conventions": conventions(arch, convention)}
    return norm, record
