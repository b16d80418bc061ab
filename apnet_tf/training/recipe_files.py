"""Recipes in TOML files: ``fit --recipe FILE.toml`` reads one, ``fit --show-recipe`` writes one.

A recipe file holds ``field = value`` lines, one per ``Recipe`` field it sets (any subset; the
rest come from the recipe before it, ``default`` unless told otherwise)::

    # my_recipe.toml
    batch_size = 64
    ema_momentum = 0.99

``recipe_toml`` writes every field, so what it writes reads back as the same recipe. No
TensorFlow here: ``fit --show-recipe`` answers at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
import typing
from collections.abc import Iterable

from apnet_tf.errors import ApnetError
from apnet_tf.training.recipes import RECIPES, Recipe, flag_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["read_recipe_file", "recipe_toml", "layered_recipe"]

_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(Recipe)
    return {f.name: hints[f.name] for f in dataclasses.fields(Recipe)}


def _typed(value, kind: type):
    """``value`` as a ``kind`` field holds it, or None when TOML gave another type (a bool is no
    number here, though Python counts it as one; a whole number is a fine float)."""
    if kind is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    return value if isinstance(value, kind) else None


def read_recipe_file(path: str) -> dict:
    """The recipe fields a TOML file sets: {field: value}, each of its field's type.

    Raises:
        ApnetError: one line naming the file and the problem: missing or unreadable, not TOML,
            a key that is no recipe field, a value of the wrong type.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ApnetError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise ApnetError(f"{path}: is a folder, not a recipe file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ApnetError(f"{path}: not a TOML recipe file: {exc}") from None
    except UnicodeDecodeError:
        raise ApnetError(f"{path}: not a TOML recipe file: not UTF-8 text") from None
    types, fields = _field_types(), {}
    for key, value in data.items():
        if key not in types:
            near = difflib.get_close_matches(key, types, n=1)
            hint = f"did you mean {near[0]}?" if near else f"the fields are {', '.join(types)}"
            raise ApnetError(f"{path}: {key}: not a recipe field; {hint}")
        typed = _typed(value, types[key])
        if typed is None:
            raise ApnetError(f"{path}: {key}: expected {_TYPE_WORDS[types[key]]}, got "
                             f"{value!r}")
        fields[key] = typed
    return fields


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         "inf" if value > 0 else "-inf")
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # JSON's string escapes are TOML's basic-string escapes


def recipe_toml(recipe: Recipe, sources: Iterable[str] = ()) -> str:
    """Every field of ``recipe`` as a TOML file that ``read_recipe_file`` reads back as the same
    recipe; ``sources`` (what it was made of) go into the opening comment."""
    made_of = ", then ".join(sources)
    lines = ["# An apnet-tf fit recipe" + (f": {made_of}" if made_of else "") + ".",
             "# apnet-tf fit --recipe THIS_FILE trains with it; a file may set any of these "
             "fields."]
    lines += [f"{f.name} = {_toml_value(getattr(recipe, f.name))}"
              for f in dataclasses.fields(Recipe)]
    return "\n".join(lines) + "\n"


def layered_recipe(sources: Iterable[str] = ("default",), **overrides) -> Recipe:
    """The recipe ``fit`` trains with: named recipes and TOML files in turn, each named recipe
    replacing every field and each file the fields it sets, then ``overrides`` (``fit``'s flags;
    None values are ignored). Checked, with each bad value named where it came from.

    Args:
        sources: names of ``RECIPES`` (``"default"``, ``"paper"``) and paths of recipe files.

    Raises:
        ApnetError: an unknown name, a bad file, or a bad value, named by its file and key or
            its flag.
    """
    recipe, origin = RECIPES["default"], {}
    for source in sources:
        if source in RECIPES:
            recipe, origin = RECIPES[source], {}
            continue
        if not os.path.exists(source) and not source.endswith(".toml"):
            raise ApnetError(f"--recipe: {source!r} is neither a recipe name "
                             f"({', '.join(RECIPES)}) nor a recipe file")
        fields = read_recipe_file(source)
        recipe = dataclasses.replace(recipe, **fields)
        origin.update({k: f"{source}: {k}" for k in fields})
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(Recipe)}
    if unknown:
        raise ApnetError(f"not a recipe field: {', '.join(sorted(unknown))}")
    origin.update({k: flag_name(k) for k in given})
    return dataclasses.replace(recipe, **given).validate(
        lambda field: origin.get(field, flag_name(field)))
