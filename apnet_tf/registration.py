"""``import apnet_tf`` registers the package's Keras classes, without importing TensorFlow.

A saved ``best.keras`` names the package's layers and loss (``apnet_tf>FluxScaling`` ...); Keras
finds them only in its registry, which the modules of ``REGISTERING`` fill when they are
imported. Importing them (and so TensorFlow) in ``apnet_tf/__init__`` would cost every
``apnet-tf --help`` seconds. Instead: if Keras is already imported they are imported now;
otherwise a one-shot import hook imports them right after Keras itself, so ``import apnet_tf``
followed by ``keras.models.load_model("run/best.keras")`` works in either order, for every
network of the package (tests/test_contract_layers.py saves each registered layer and loads it
so in a fresh process).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["REGISTERING", "install"]

#: The modules that register Keras classes: the spectral networks' layers and loss, APOGEE Net
#: III's and BOSS Net's layers, the YSO photometric network's input scaling.
REGISTERING = ("apnet_tf.model.network", "apnet_tf.model.published", "apnet_tf.model.bossnet",
               "apnet_tf.labels.yso")


def _register() -> None:
    try:
        for module in REGISTERING:
            importlib.import_module(module)
    except ImportError:  # no TensorFlow: nothing could be loaded anyway
        pass


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the real loader of ``keras`` so that, once Keras has been
    executed, ``apnet_tf.model.network`` is imported and registers its classes."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # one shot; and the lookup below must not find this finder
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, real_exec = spec.loader, spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            loader.exec_module = real_exec
            _register()

        loader.exec_module = exec_module
        return spec


def install() -> None:
    """Register now if Keras is loaded, else once it is."""
    if "keras" in sys.modules:
        _register()
    elif not any(isinstance(f, _AfterKeras) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())
