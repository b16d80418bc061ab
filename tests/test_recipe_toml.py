"""Recipes in TOML files: fit --recipe FILE.toml, fit --show-recipe, and their round trip."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from cli_helpers import assert_one_line_error, cli

from apnet_tf.errors import ApnetError
from apnet_tf.training.recipe_files import layered_recipe, read_recipe_file, recipe_toml
from apnet_tf.training.recipes import FILE_ONLY_FIELDS, RECIPES, Recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

#: The recipe-file-only fields that were flags before (still accepted, with a note).
FORMER_FLAGS = ("min_improvement", "ema_momentum")
#: A value other than the default's for every recipe field, each valid on its own.
CHANGED = {"optimizer": "sgd", "learning_rate": 0.003, "momentum": 0.9, "batch_size": 48,
           "dropout": 0.25, "input_scaling": "none", "initializer": "glorot_normal",
           "epochs": 7, "patience": 2, "min_improvement": 0.01, "lr_plateau_patience": 0,
           "noise_augment": False, "ema_momentum": 0.99, "finetune_learning_rate": 1e-05,
           "finetune_fraction": 0.5, "finetune_patience": 4, "finetune_max_rounds": 3,
           "finetune_dev_tolerance": 0.1, "refit_last_layer": True, "average_rounds": True,
           "precision": "float32",
           "seed": 4294967295,
           "deterministic": True}


def _show(*args) -> str:
    res = cli("fit", *args, "--show-recipe")
    assert res.exit_code == 0, res.output
    return res.stdout


def test_changed_covers_every_field():
    assert set(CHANGED) == {f.name for f in dataclasses.fields(Recipe)}
    assert all(getattr(RECIPES["default"], k) != v for k, v in CHANGED.items())


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_every_recipe_field_can_come_from_a_toml_file(tmp_path, field):
    path = tmp_path / "recipe.toml"
    value = CHANGED[field]
    literal = ("true" if value else "false") if isinstance(value, bool) else \
        f'"{value}"' if isinstance(value, str) else repr(value)
    path.write_text(f"{field} = {literal}\n")
    recipe = layered_recipe([str(path)])
    assert getattr(recipe, field) == value
    assert recipe == dataclasses.replace(RECIPES["default"], **{field: value})
    assert f"{field} = {literal}" in _show("--recipe", path)


def test_show_recipe_round_trips(tmp_path):
    """Named recipe + file + flags, printed, read back: the same recipe, the same TOML."""
    mine = tmp_path / "mine.toml"
    mine.write_text("# mine\nema_momentum = 0.99\ndropout = 0.2\n")
    first = _show("--recipe", "paper", "--recipe", mine, "--batch-size", "64",
                  "--no-noise-augment", "--deterministic")
    assert first.startswith("# An apnet-tf fit recipe: paper, then ")
    assert f"then {mine}, then --batch-size 64, then --no-noise-augment, then --deterministic" \
        in first
    expected = dataclasses.replace(RECIPES["paper"], ema_momentum=0.99, dropout=0.2,
                                   batch_size=64, noise_augment=False, deterministic=True)
    assert layered_recipe(["paper", str(mine)], batch_size=64, noise_augment=False,
                          deterministic=True) == expected
    shown = tmp_path / "shown.toml"
    shown.write_text(first)
    assert read_recipe_file(str(shown)) == dataclasses.asdict(expected)
    assert layered_recipe([str(shown)]) == expected
    again = _show("--recipe", shown)
    assert tomllib.loads(again) == tomllib.loads(first) == dataclasses.asdict(expected)


def test_every_changed_value_round_trips_through_recipe_toml(tmp_path):
    recipe = Recipe(**CHANGED)
    path = tmp_path / "all.toml"
    path.write_text(recipe_toml(recipe, ["test"]))
    assert layered_recipe([str(path)]) == recipe
    assert type(layered_recipe([str(path)]).learning_rate) is float


def test_later_sources_and_flags_override_earlier_ones(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("batch_size = 16\noptimizer = 'adam'\n")
    # a file sets its fields only; the named recipe before it gives the rest
    on_paper = layered_recipe(["paper", str(path)])
    assert (on_paper.batch_size, on_paper.optimizer, on_paper.input_scaling) == (16, "adam",
                                                                                  "none")
    # a named recipe after a file replaces every field
    assert layered_recipe([str(path), "paper"]) == RECIPES["paper"]
    # flags override files; None means "not given"
    assert layered_recipe([str(path)], batch_size=8, dropout=None).batch_size == 8
    assert layered_recipe() == RECIPES["default"]


@pytest.mark.parametrize("text,words", [
    ("bach_size = 64\n", ["bach_size", "not a recipe field", "did you mean batch_size"]),
    ("colour = 'red'\n", ["colour", "not a recipe field", "the fields are optimizer"]),
    ("batch_size = '64'\n", ["batch_size", "expected a whole number", "'64'"]),
    ("batch_size = 32.5\n", ["batch_size", "expected a whole number", "32.5"]),
    ("noise_augment = 1\n", ["noise_augment", "expected true or false"]),
    ("learning_rate = true\n", ["learning_rate", "expected a number", "True"]),
    ("seed = true\n", ["seed", "expected a whole number"]),
    ("optimizer = 3\n", ["optimizer", "expected a string"]),
    ("[recipe]\nbatch_size = 3\n", ["recipe", "not a recipe field"]),
    ("batch_size = \n", ["not a TOML recipe file"]),
    ("batch_size = 0\n", ["batch_size", "must be at least 1"]),
    ("dropout = 1.5\n", ["dropout", "must be at least 0 and below 1"]),
    ("optimizer = 'rmsprop'\n", ["optimizer", "choose one of adam, sgd"]),
    ("seed = -1\n", ["seed", "must be a whole number"]),
])
def test_a_bad_recipe_file_is_one_line_naming_the_file_and_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for args in (["--show-recipe"], ["--records", tmp_path / "no", "--out", tmp_path / "run"]):
        line = assert_one_line_error(cli("fit", "--recipe", path, *args), f"{path}: ", *words)
        assert "--" not in line.split(str(path))[1]  # names the key, not a flag
    assert not (tmp_path / "run").exists()


def test_a_bad_flag_is_still_named_as_the_flag(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text("dropout = 0.2\n")
    line = assert_one_line_error(cli("fit", "--recipe", path, "--batch-size", "0",
                                     "--show-recipe"), "--batch-size: must be at least 1")
    assert str(path) not in line


@pytest.mark.parametrize("make,words", [
    (lambda p: None, ["no such recipe file"]),
    (lambda p: p.mkdir(), ["is a folder"]),
    (lambda p: p.write_bytes(b"\xff\xfe batch_size = 3"), ["not a TOML recipe file"]),
])
def test_an_unreadable_recipe_file_is_one_line(tmp_path, make, words):
    path = tmp_path / "r.toml"
    make(path)
    assert_one_line_error(cli("fit", "--recipe", path, "--show-recipe"), str(path), *words)


def test_an_unknown_recipe_name_is_one_line(tmp_path):
    assert_one_line_error(cli("fit", "--recipe", "papr", "--show-recipe"),
                          "--recipe", "'papr'", "neither a recipe name (paper, default)")
    with pytest.raises(ApnetError, match="not a recipe field: bach_size"):
        layered_recipe(["default"], bach_size=3)


def test_file_only_fields_have_no_visible_flag_but_their_old_flags_still_work():
    from typer.testing import CliRunner

    from apnet_tf.cli.app import app

    help_text = CliRunner().invoke(app, ["fit", "--help"], terminal_width=200).output
    for field in FILE_ONLY_FIELDS:
        assert "--" + field.replace("_", "-") not in help_text
    for field in FORMER_FLAGS:
        flag = "--" + field.replace("_", "-")
        res = cli("fit", flag, "0.5", "--show-recipe")
        assert res.exit_code == 0, res.output
        assert f"{field} = 0.5" in res.stdout
        assert f"note: {flag} is now set in a recipe file ({field} = 0.5 in a TOML file for " \
            "--recipe)" in " ".join(res.stderr.split())


def test_fit_without_show_recipe_still_requires_records_and_out(tmp_path):
    res = cli("fit", "--out", tmp_path / "run")
    assert res.exit_code == 2 and "Missing option '--records'" in res.output
    res = cli("fit", "--records", tmp_path / "r")
    assert res.exit_code == 2 and "Missing option '--out'" in res.output


def test_show_recipe_answers_without_tensorflow():
    probe = ("import sys\nfrom apnet_tf.cli.app import app\n"
             "try:\n    app(['fit', '--recipe', 'paper', '--show-recipe'])\n"
             "except SystemExit as e:\n    assert not e.code, e.code\n"
             "print('HEAVY:', sorted({m.split('.')[0] for m in sys.modules} & "
             "{'tensorflow', 'keras'}))\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "optimizer = \"sgd\"" in res.stdout and "HEAVY: []" in res.stdout
