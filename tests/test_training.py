import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

from apnet_tf.data.dataset import make_dataset
from apnet_tf.errors import ApnetError
from apnet_tf.model.network import MaskedStandardizedMSE
from apnet_tf.training.callbacks import EarlyStoppingWithReload
from apnet_tf.training.finetuning import dataset_loss, rolling_resample
from apnet_tf.training.recipes import get_recipe
from apnet_tf.workflows import fit

STD = [1000.0, 1.0, 0.3]


def _tiny_model():
    inp = keras.Input((8575,))
    x = keras.layers.Lambda(lambda f: f[:, ::100] / 100.0)(inp)
    out = keras.layers.Dense(3)(x)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.SGD(1e-4), MaskedStandardizedMSE(STD))
    return model


class _Script(keras.callbacks.Callback):
    """Replace the dev loss with a scripted sequence and remember the weights of every epoch."""

    def __init__(self, losses):
        super().__init__()
        self.losses, self.weights = losses, []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.losses[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


def test_early_stopping_stops_after_exactly_the_patience_and_reloads_best(tmp_path,
                                                                         random_batches):
    model = _tiny_model()
    losses = [1.0, 0.6, 0.4, 0.5, 0.45, 0.41, 0.9, 0.7, 0.1, 0.1]
    script = _Script(losses)
    stopper = EarlyStoppingWithReload(str(tmp_path / "best.keras"), patience=5)
    hist = model.fit(random_batches(), validation_data=random_batches(seed=1), epochs=10, verbose=0,
                     callbacks=[script, stopper])
    # best at epoch index 2; five epochs without improvement (3..7) -> stop after index 7
    assert len(hist.history["loss"]) == 8
    assert stopper.best_epoch == 2 and stopper.stopped_epoch == 7
    for now, best in zip(model.get_weights(), script.weights[2]):
        np.testing.assert_array_equal(now, best)  # the run ends on the best weights
    assert any((a != b).any() for a, b in zip(script.weights[7], script.weights[2]))
    saved = keras.models.load_model(tmp_path / "best.keras", safe_mode=False)
    for a, b in zip(saved.get_weights(), script.weights[2]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_counts_only_improvements_of_min_improvement(random_batches):
    """1% below the best counts, 0.5% does not: 1.0 -> 0.995 (not better) -> 0.989 (better) ->
    0.985, 0.984 (neither is 1% below 0.989) -> stop after two flat epochs, best epoch index 2."""
    model = _tiny_model()
    script = _Script([1.0, 0.995, 0.989, 0.985, 0.984, 0.5])
    stopper = EarlyStoppingWithReload(patience=2, min_improvement=0.01)
    hist = model.fit(random_batches(), validation_data=random_batches(seed=1), epochs=6,
                     verbose=0, callbacks=[script, stopper])
    assert len(hist.history["loss"]) == 5
    assert stopper.best_epoch == 2 and stopper.best == pytest.approx(0.989)


def test_rolling_resample_draws_new_payne_stars_each_round(records):
    draws = []

    def train_for_seed(seed):
        ids = make_dataset(str(records), splits=["train"], sample={"payne": 0.3}, seed=seed,
                           features=["apogee_id", "category"], labeled_only=True)
        drawn = set()
        for ex, _ in ids:
            drawn |= {(i, c) for i, c in zip(ex["apogee_id"].numpy(), ex["category"].numpy())}
        draws.append((seed, drawn))
        return make_dataset(str(records), splits=["train"], sample={"payne": 0.3}, seed=seed,
                            labeled_only=True, batch_size=16)

    model = _tiny_model()
    dev = make_dataset(str(records), splits=["dev"], labeled_only=True)
    focus = make_dataset(str(records), splits=["dev"], categories=["mstar", "yso"],
                         labeled_only=True)
    rounds = rolling_resample(model, train_for_seed, dev, lambda m: dataset_loss(m, focus, STD),
                              patience_rounds=2,
                              epoch_patience=1, max_epochs=2, max_rounds=4, seed=10)
    assert len(rounds) == len(draws) >= 2
    seeds = [s for s, _ in draws]
    assert len(set(seeds)) == len(seeds)
    payne = [{i for i, c in d if c == b"payne"} for _, d in draws]
    others = [{i for i, c in d if c != b"payne"} for _, d in draws]
    assert all(p != payne[0] for p in payne[1:])  # a fresh Payne draw each round
    assert all(o == others[0] and o for o in others)  # all mstar + yso every round
    # it stops after `patience_rounds` rounds without an mstar+yso improvement
    flags = [r["improved"] for r in rounds]
    if len(rounds) < 4:
        assert flags[-2:] == [False, False]


def test_fit_writes_the_run_folder_and_resumes(records, tmp_path):
    run = tmp_path / "run"
    # float32, so that the saved model's dev loss can be compared exactly with the logged one
    recipe = get_recipe("default", epochs=3, patience=5, finetune_max_rounds=1,
                        precision="float32")

    class Kill(Exception):
        pass

    seen = []

    def kill_in_epoch_2(stage, epoch, logs):
        seen.append((stage, epoch))
        if stage == "pretrain" and epoch == 2:
            raise Kill

    with pytest.raises(Kill):
        fit(str(records), str(run), stage="pretrain", recipe=recipe, on_epoch=kill_in_epoch_2)
    assert os.path.isdir(run / "backup")
    seen.clear()
    progress = []
    res = fit(str(records), str(run), stage="pretrain", recipe=recipe, resume=True,
              on_epoch=lambda stage, epoch, logs: seen.append((stage, epoch)),
              on_progress=lambda done, total: progress.append((done, total)))
    assert seen == [("pretrain", 3)]  # it continued; it did not start again from epoch 1
    # the closing calibration's Monte Carlo reports its progress, ending at its total
    assert progress and progress[-1][0] == progress[-1][1] > 0
    hist = pd.read_csv(run / "history.csv")
    assert list(hist.epoch) == [1, 2, 3]
    for name in ("best.keras", "normalization.json", "history.csv", "training.png",
                 "table2.csv", "table2.md", "table3.csv", "table3.md"):
        assert (run / name).exists(), name
    assert not (run / "backup").exists()
    t3 = pd.read_csv(run / "table3.csv", index_col=[0, 1])
    assert list(t3.columns)[:3] == ["train", "dev", "test"] and len(t3) == 9
    assert "test bias" in t3.columns and "test rms" in t3.columns  # beside the scatter
    norm = json.loads((run / "normalization.json").read_text())
    assert norm["targets"] == ["teff", "logg", "fe_h"] and len(norm["std"]) == 3
    # the saved best model is the best by dev loss, not the last
    model = keras.models.load_model(run / "best.keras")
    dev = make_dataset(str(records), splits=["dev"], labeled_only=True)
    model.compile(loss=MaskedStandardizedMSE(norm["std"]))
    assert model.evaluate(dev, verbose=0) == pytest.approx(hist.val_loss.min(), rel=1e-3)
    assert res.epochs == {"pretrain": 1}  # one epoch run after the resume


def test_fit_in_mixed_bfloat16_saves_a_float32_model(records, tmp_path):
    run = tmp_path / "run"
    fit(str(records), str(run), stage="pretrain",
        recipe=get_recipe("default", epochs=2, precision="mixed_bfloat16"))
    record = json.loads((run / "run.json").read_text())
    assert record["precision"] == "mixed_bfloat16"
    assert record["recipe"]["precision"] == "mixed_bfloat16"
    norm = json.loads((run / "normalization.json").read_text())
    model = keras.models.load_model(run / "best.keras")
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    dev = make_dataset(str(records), splits=["dev"], labeled_only=True)
    model.compile(loss=MaskedStandardizedMSE(norm["std"]))
    hist = pd.read_csv(run / "history.csv")
    # the logged dev loss was computed in bfloat16 (8-bit mantissa), the saved model's in float32
    assert model.evaluate(dev, verbose=0) == pytest.approx(hist.val_loss.min(), rel=0.02)


def test_auto_precision_follows_the_hardware(monkeypatch):
    from apnet_tf.model import precision as model_precision
    from apnet_tf.training import precision as training

    monkeypatch.setattr(model_precision, "bfloat16_is_native", lambda: True)
    assert training.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(model_precision, "bfloat16_is_native", lambda: False)
    assert training.resolve_precision("auto") == "float32"
    assert training.resolve_precision("float32") == "float32"
    # the default trains in bfloat16 where the hardware computes it (bench/time_to_accuracy.py);
    # the paper's recipe stays as published
    assert get_recipe("paper").precision == "float32"
    assert get_recipe("default").precision == "auto"
    with pytest.raises(ApnetError, match="unknown precision 'float16'"):
        training.resolve_precision("float16")


def test_mirrored_strategy_on_two_logical_cpus(records, tmp_path):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from apnet_tf.workflows import fit
        from apnet_tf.training.recipes import get_recipe
        from apnet_tf.training.distribute import get_strategy
        assert get_strategy("mirrored").num_replicas_in_sync == 2
        res = fit({str(records)!r}, {str(tmp_path / 'run')!r}, stage="all",
                  recipe=get_recipe("default", epochs=1, finetune_max_rounds=1, batch_size=8),
                  strategy="mirrored")
        print("REPLICAS", get_strategy("mirrored").num_replicas_in_sync, res.epochs)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REPLICAS 2" in proc.stdout
    assert (tmp_path / "run" / "best.keras").exists()
    assert (tmp_path / "run" / "finetune_rounds.csv").exists()


_WORKER = textwrap.dedent("""
    import json, os, sys
    records, run, index, ports = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"localhost:{p}" for p in ports]},
        "task": {"type": "worker", "index": index}})
    from apnet_tf.workflows import fit
    from apnet_tf.training.recipes import get_recipe
    res = fit(records, run, stage="all", strategy="multiworker",
              recipe=get_recipe("default", epochs=1, finetune_max_rounds=1, batch_size=8))
    print("EPOCHS", res.epochs)
""")


def _free_ports(n):
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_strategy_with_two_workers_on_one_shard_per_split(survey, tmp_path):
    from apnet_tf.data.records import make_records
    from apnet_tf.model.loading import load_model

    # one shard per split: fewer files than workers, where FILE sharding cannot work
    make_records([str(survey)], str(tmp_path / "records"), labels=str(survey / "labels.csv"),
                 shards=1)
    ports = [str(p) for p in _free_ports(2)]
    tmp_dirs = [tmp_path / "tmp0", tmp_path / "tmp1"]
    procs = []
    for i, run in enumerate(("run", "run_worker1")):
        tmp_dirs[i].mkdir()
        env = {**os.environ, "TMPDIR": str(tmp_dirs[i])}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tmp_path / "records"), str(tmp_path / run),
             str(i), *ports], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env))
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "EPOCHS {'pretrain': 1, 'finetune': 1}" in out
    # the chief (worker 0) wrote a complete, loadable run ...
    loaded = load_model(str(tmp_path / "run"))
    pred = loaded.predict(np.ones((2, 8575), np.float32))
    assert pred.shape == (2, 3) and np.isfinite(pred).all()
    assert (tmp_path / "run" / "table2.csv").exists()
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 2
    # ... and the other worker wrote nothing: no run folder, its temporary folder removed
    assert not (tmp_path / "run_worker1").exists()
    assert list(tmp_dirs[1].iterdir()) == []


@pytest.mark.slow
def test_two_workers_of_fit_on_the_command_line_both_end_cleanly(small_records, tmp_path):
    """``apnet-tf fit --strategy multiworker`` on two loopback workers, each its own process
    through the CLI: both exit 0 (the non-chief one once crashed printing the Table 3 it does
    not have), the other worker says what it did, and the chief's run loads."""
    from apnet_tf.model.loading import load_model

    ports = _free_ports(2)
    procs = []
    for i, run in enumerate(("run", "run_worker1")):
        (tmp_path / f"tmp{i}").mkdir()
        config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                  "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TMPDIR": str(tmp_path / f"tmp{i}"),
               "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "apnet_tf.cli", "fit", "--records", str(small_records),
             "--out", str(tmp_path / run), "--strategy", "multiworker", "--stage", "pretrain",
             "--epochs", "1", "--batch-size", "2"], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
        assert "Traceback" not in out, out[-3000:]
    assert "best model: " in outs[0] and "Table 3" in outs[0]
    assert "worker 1 of the multi-worker run: trained pretrain 1 epoch in step with the chief" \
        in outs[1] and "best model" not in outs[1], outs[1][-3000:]
    loaded = load_model(str(tmp_path / "run"))
    pred = loaded.predict(np.ones((2, 8575), np.float32))
    assert pred.shape == (2, 3) and np.isfinite(pred).all()
    assert not (tmp_path / "run_worker1").exists() and list((tmp_path / "tmp1").iterdir()) == []


def test_deterministic_runs_give_bit_identical_weights(records, tmp_path):
    # op determinism is process-wide and permanent, so it runs in a process of its own
    script = textwrap.dedent(f"""
        import numpy as np
        from apnet_tf.workflows import fit
        from apnet_tf.training.recipes import get_recipe
        recipe = get_recipe("default", epochs=1, batch_size=32, deterministic=True)
        weights = [fit({str(records)!r}, {str(tmp_path)!r} + f"/run{{i}}", stage="pretrain",
                       recipe=recipe).model.get_weights() for i in range(2)]
        same = all(np.array_equal(a, b) for a, b in zip(*weights))
        print("IDENTICAL" if same else "DIFFERENT", len(weights[0]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IDENTICAL" in proc.stdout


def test_every_recipe_field_is_a_fit_flag_or_a_recipe_file_field():
    """Every field but the recipe-file-only ones has a visible flag of its name; those have
    none, or hidden flags where they had flags before (accepted with a note until the next
    release). Every field can also come from a recipe file (tests/test_recipe_toml.py)."""
    import dataclasses

    import typer.main

    from apnet_tf.cli.app import app
    from apnet_tf.training.recipes import FILE_ONLY_FIELDS, Recipe

    fit_cmd = next(c for c in app.registered_commands if c.name == "fit")
    params = {p.name: p for p in typer.main.get_command_from_info(
        fit_cmd, pretty_exceptions_short=True, rich_markup_mode=None).params}
    fields = {f.name for f in dataclasses.fields(Recipe)}
    missing = fields - set(params) - set(FILE_ONLY_FIELDS)
    assert not missing, f"Recipe fields without a fit flag: {sorted(missing)}"
    visible = {name for name in fields & set(params) if not params[name].hidden}
    assert visible == fields - set(FILE_ONLY_FIELDS)


def _dev_losses(run, records) -> tuple[float, float, float]:
    """Dev-split standardised MSE of (the untrained network, the run's best model, the train
    label means), all standardised with the run's train std."""
    from apnet_tf.evaluation.tables import predict_records
    from apnet_tf.model.keras_runtime import load_keras
    from apnet_tf.model.network import build_model, standardized_mse

    norm = json.loads((run / "normalization.json").read_text())
    mean, std = np.array(norm["mean"]), np.array(norm["std"])
    keras.utils.set_random_seed(0)
    before = predict_records(build_model(mean, std), str(records), splits=["dev"])
    after = predict_records(load_keras(str(run / "best.keras")), str(records), splits=["dev"])
    labels = after["labels"]
    return (standardized_mse(before["pred"], before["labels"], std),
            standardized_mse(after["pred"], labels, std),
            standardized_mse(np.broadcast_to(mean, labels.shape), labels, std))


def test_training_learns(trained_run, records):
    """Twelve epochs of batch 32 on 150 stars: the dev loss falls well below the untrained
    network's and beats predicting the label means by a margin (a zero learning rate or a broken
    loss fails here)."""
    untrained, trained, means = _dev_losses(trained_run, records)
    assert np.isfinite([untrained, trained, means]).all()
    assert trained < 0.5 * untrained, (untrained, trained)
    assert trained < 0.6 * means, (means, trained)


def test_run_json_holds_the_recipe_and_old_runs_still_load(trained_run, tmp_path):
    from apnet_tf.model.loading import load_model
    from apnet_tf.training.run_folder import read_run_record

    record = json.loads((trained_run / "run.json").read_text())
    assert record["recipe"]["epochs"] == 12 and record["stages"] == ["pretrain"]
    assert record["precision"] in ("float32", "mixed_bfloat16")
    assert "recipe" not in json.loads((trained_run / "normalization.json").read_text())
    # a run written before run.json: the recipe sat in normalization.json
    old = tmp_path / "old_run"
    old.mkdir()
    for name in ("best.keras", "calibration.json", ".apnet-tf.json"):
        if (trained_run / name).exists():
            (old / name).write_bytes((trained_run / name).read_bytes())
    norm = json.loads((trained_run / "normalization.json").read_text())
    norm.update(recipe=record["recipe"], precision=record["precision"])
    (old / "normalization.json").write_text(json.dumps(norm))
    assert read_run_record(str(old))["recipe"] == record["recipe"]
    assert load_model(str(old)).normalization["std"] == norm["std"]


def test_the_weight_average_spans_at_most_one_epoch():
    from apnet_tf.training.callbacks import average_momentum

    assert average_momentum(0.99, 500) == 0.99
    assert average_momentum(0.99, 4) == pytest.approx(0.8)  # a 4-step epoch: span 5 steps
    assert average_momentum(0.0, 4) == 0.0  # off stays off
    assert average_momentum(0.99, -2) == 0.99  # an epoch of unknown length
    with pytest.raises(ApnetError, match="--ema-momentum"):
        get_recipe("default", ema_momentum=1.0).validate()


def test_pretraining_validates_saves_and_ends_on_the_weight_average(records, tmp_path):
    """With the weight average on, the dev loss logged each epoch, the saved model and the model
    the run ends on are all the averaged weights: the saved model's dev loss is the best logged
    one, and it differs from a run of the raw weights with the same seed."""
    from apnet_tf.training import fitting

    losses = {}
    for ema in (0.0, 0.99):
        run = tmp_path / f"run{ema}"
        res = fitting.fit(str(records), str(run), stage="pretrain", recipe=get_recipe(
            "default", epochs=3, ema_momentum=ema, precision="float32"))
        norm = json.loads((run / "normalization.json").read_text())
        hist = pd.read_csv(run / "history.csv")
        saved = keras.models.load_model(run / "pretrained.keras")
        saved.compile(loss=MaskedStandardizedMSE(norm["std"]))
        dev = make_dataset(str(records), splits=["dev"], labeled_only=True)
        assert saved.evaluate(dev, verbose=0) == pytest.approx(hist.val_loss.min(), rel=1e-3)
        for a, b in zip(saved.get_weights(), res.model.get_weights()):
            np.testing.assert_array_equal(a, b)
        losses[ema] = hist.val_loss.tolist()
    assert losses[0.0] != losses[0.99]
