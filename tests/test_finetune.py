"""Fine-tuning (paper 3.4): the learning rate and the weights each round starts from, the gate's
loss, and a ``--stage finetune`` run that keeps the pretraining record."""

import json
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from apnet_tf.model.network import MaskedStandardizedMSE, standardized_mse
from apnet_tf.training.finetuning import average_rounds, dataset_loss, rolling_resample
from apnet_tf.training.recipes import get_recipe
from apnet_tf.workflows import fit

STD = [1000.0, 1.0, 0.3]


def _tiny_model(lr=1e-3):
    inp = keras.Input((8575,))
    x = keras.layers.Lambda(lambda f: f[:, ::100] / 100.0)(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    model.compile(keras.optimizers.SGD(lr), MaskedStandardizedMSE(STD))
    return model


class _Rounds(keras.callbacks.Callback):
    """Remember the weights and the learning rate at the start and end of every round."""

    def __init__(self):
        super().__init__()
        self.start, self.end, self.lr = [], [], []

    def on_train_begin(self, logs=None):
        self.start.append([w.copy() for w in self.model.get_weights()])
        self.lr.append(float(self.model.optimizer.learning_rate.numpy()))

    def on_train_end(self, logs=None):
        self.end.append([w.copy() for w in self.model.get_weights()])


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_round_after_a_rejected_one_starts_from_the_best_weights_and_learning_rate(
        random_batches):
    # focus losses: start 1.0; round 1 improves, rounds 2 and 3 do not -> stop after round 3
    focus = iter([1.0, 0.5, 0.9, 0.8])
    rec = _Rounds()
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1, min_delta=1e9,
                                                min_lr=1e-9)
    model = _tiny_model(lr=1e-3)
    rounds = rolling_resample(model, lambda seed: random_batches(32, seed), random_batches(32, 99),
                              lambda m: next(focus), patience_rounds=2, epoch_patience=5,
                              max_epochs=3, max_rounds=5, dev_tolerance=1e9,
                              callbacks=[plateau, rec])
    assert [r["improved"] for r in rounds] == [True, False, False]
    assert _same(rec.start[1], rec.end[0])
    # paper 3.4: "the last best performing model was reloaded" before the next draw
    assert not _same(rec.end[1], rec.end[0])
    assert _same(rec.start[2], rec.end[0])
    # every round starts at the fine-tuning rate, however often the last one halved it
    assert rec.lr == pytest.approx([1e-3] * 3)
    assert _same(model.get_weights(), rec.end[0])


def _rounds_and_ends(model, random_batches, focus, whole=None):
    """rolling_resample with the rounds' end weights collected as fit collects them (its
    on_round, for rounds within the whole-dev limit)."""
    ends = []

    def on_round(row):
        if row["dev_loss"] <= row["dev_limit"]:
            ends.append(model.get_weights())

    rounds = rolling_resample(model, lambda seed: random_batches(32, seed), random_batches(32, 99),
                              lambda m: next(focus),
                              dev_loss=(lambda m: next(whole)) if whole else None,
                              patience_rounds=2, epoch_patience=5, max_epochs=2, max_rounds=5,
                              dev_tolerance=0.05 if whole else 1e9, on_round=on_round)
    return rounds, ends


@pytest.mark.parametrize("average_focus, kept", [(0.4, True), (0.6, False)])
def test_the_average_of_the_rounds_replaces_the_best_round_only_through_the_gate(
        random_batches, average_focus, kept):
    # focus losses: start 1.0; round 1 improves, rounds 2 and 3 do not; then the average's
    focus = iter([1.0, 0.5, 0.9, 0.8, average_focus])
    model = _tiny_model(lr=1e-3)
    rounds, ends = _rounds_and_ends(model, random_batches, focus)
    assert [r["improved"] for r in rounds] == [True, False, False] and len(ends) == 3
    best_round = model.get_weights()
    assert _same(best_round, ends[0])
    row = average_rounds(model, ends, rounds, lambda m: next(focus),
                         lambda m: float(m.evaluate(random_batches(32, 99), verbose=0)))
    assert row["round"] == "average" and row["averaged"] == 3 and row["improved"] is kept
    assert row["best_before"] == pytest.approx(0.5)
    mean = [np.mean([e[i] for e in ends], axis=0) for i in range(len(ends[0]))]
    got = model.get_weights()
    if kept:
        assert all(np.allclose(g, m, rtol=1e-6, atol=1e-7) for g, m in zip(got, mean))
        assert not _same(got, best_round)
    else:
        assert _same(got, best_round)


def test_rounds_that_lost_the_whole_dev_are_left_out_of_the_average(random_batches):
    focus = iter([1.0, 0.5, 0.9, 0.8, 0.1])
    whole = iter([1.0, 1.0, 1e6, 1.0, 1.0])  # round 2 worsened the whole dev past its limit
    model = _tiny_model(lr=1e-3)
    rounds, ends = _rounds_and_ends(model, random_batches, focus, whole)
    assert len(rounds) == 3 and len(ends) == 2
    row = average_rounds(model, ends, rounds, lambda m: next(focus), lambda m: next(whole))
    assert row["averaged"] == 2 and row["improved"]
    mean = [np.mean([ends[0][i], ends[1][i]], axis=0) for i in range(len(ends[0]))]
    assert all(np.allclose(g, m, rtol=1e-6, atol=1e-7)
               for g, m in zip(model.get_weights(), mean))
    assert average_rounds(model, ends[:1], rounds, None, None) is None  # nothing to average


def test_training_loss_weighs_every_present_label_like_table2():
    # star 0 has one label, star 1 all three: each present label must weigh the same
    y_true = np.array([[np.nan, 2.0, np.nan], [4000.0, 1.0, 0.0]], "float32")
    y_pred = np.array([[5000.0, 3.0, 0.1], [4500.0, 1.5, 0.3]], "float32")
    expect = standardized_mse(y_pred, y_true, STD)
    # worked by hand: ((1)^2 + (0.5)^2 + (0.5)^2 + (1)^2) / 4
    assert expect == pytest.approx(2.5 / 4)
    got = float(MaskedStandardizedMSE(STD)(y_true, y_pred))
    assert got == pytest.approx(expect, rel=1e-6)
    # the gate's loss (dataset_loss) and the compiled loss agree on a set with missing labels
    model = _tiny_model()
    x = np.random.default_rng(1).uniform(50, 150, (8, 8575)).astype("float32")
    y = np.tile(y_true, (4, 1))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert float(model.evaluate(ds, verbose=0)) == pytest.approx(dataset_loss(model, ds, STD),
                                                                 rel=1e-5)


def test_finetune_stage_keeps_the_pretraining_record_and_the_model_normalisation(
        trained_run, records, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    # records whose manifest statistics differ from those built into the pretrained model
    other = tmp_path / "records"
    shutil.copytree(records, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["target_stats"]["std"] = [s * 1.5 for s in manifest["target_stats"]["std"]]
    manifest["target_stats"]["mean"] = [m + 0.1 for m in manifest["target_stats"]["mean"]]
    (other / "manifest.json").write_text(json.dumps(manifest))
    before = pd.read_csv(run / "history.csv")
    norm_before = json.loads((run / "normalization.json").read_text())
    # a learning rate so small that the dev loss is flat: the schedule halves it every epoch
    # (in float32: bfloat16's rounding, summed in a load-dependent order, moved the dev loss by
    # more than the schedule's min_delta between two epochs and the test failed at random)
    recipe = get_recipe("default", epochs=3, patience=5, lr_plateau_patience=1,
                        finetune_learning_rate=1e-8, finetune_max_rounds=2,
                        finetune_patience=5, precision="float32")
    fit(str(other), str(run), stage="finetune", recipe=recipe)
    hist = pd.read_csv(run / "history.csv")
    pre = hist[hist.stage == "pretrain"]
    assert len(pre) == len(before) and (run / "pretrain.done").exists()
    np.testing.assert_allclose(pre.val_loss, before.val_loss)
    norm = json.loads((run / "normalization.json").read_text())
    model = keras.models.load_model(run / "best.keras")
    assert norm["std"] == pytest.approx(model.get_layer("labels").std)
    assert norm["mean"] == pytest.approx(model.get_layer("labels").mean)
    assert norm["std"] == pytest.approx(norm_before["std"])
    rounds = pd.read_csv(run / "finetune_rounds.csv")
    assert list(rounds.epochs) == [3, 3]
    lr = hist[hist.stage == "finetune"].learning_rate.to_numpy()
    # fresh schedule each round, floor set from the fine-tuning rate (not the pretraining one)
    assert lr == pytest.approx([1e-8, 1e-8, 5e-9] * 2, rel=1e-5)


def test_fit_ends_on_the_average_of_the_rounds_when_asked_and_says_so(trained_run, records,
                                                                    tmp_path, capsys):
    import apnet_tf

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    apnet_tf.fit(records, run, stage="finetune", epochs=1, finetune_max_rounds=3,
                 finetune_patience=5, finetune_dev_tolerance=1e9, average_rounds=True,
                 precision="float32")
    rounds = pd.read_csv(run / "finetune_rounds.csv")
    assert list(rounds["round"].astype(str)) == ["1", "2", "3", "average"]
    assert int(rounds["averaged"].iloc[-1]) == 3
    kept = str(rounds["improved"].iloc[-1]).lower() == "true"
    assert (f"fine-tune the average of 3 rounds' weights, {'kept' if kept else 'not kept'}"
            in capsys.readouterr().out)


def test_noise_augmentation_has_the_papers_scale_and_spares_bad_pixels():
    from apnet_tf.training.inputs import add_noise

    rng = np.random.default_rng(3)
    flux = rng.uniform(0.5, 1.5, (32, 8575)).astype("float32")
    err = rng.uniform(0.01, 0.03, (32, 8575)).astype("float32")
    high = rng.random((32, 8575)) < 0.05
    err[high] = 1.0  # abnormally large errors (chip gaps, telluric lines)
    bad = rng.random((32, 8575)) < 0.1
    y = np.ones((32, 3), "float32")
    noisy, y2 = add_noise({"flux": flux, "err": err, "bad": bad}, y)
    np.testing.assert_array_equal(y2, y)
    z = noisy.numpy() - flux
    assert (z[bad] == 0).all()  # bad pixels keep their flux
    ordinary = ~bad & ~high
    # N(0, 1) times the pixel's error where it is ordinary ...
    assert np.std(z[ordinary] / err[ordinary]) == pytest.approx(1.0, abs=0.01)
    assert abs(np.mean(z[ordinary] / err[ordinary])) < 0.01
    # ... and capped at 5x the spectrum's typical (median good-pixel) error where it is not
    typical = np.array([np.median(e[~b]) for e, b in zip(err, bad)])[:, None]
    capped = np.broadcast_to(5 * typical, err.shape)[high & ~bad]
    assert np.std(z[high & ~bad] / capped) == pytest.approx(1.0, abs=0.03)
