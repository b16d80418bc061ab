"""The last-layer refit at the end of ``fit`` (``training.last_layer``): its ridge solution, the
category weighting, and what it does to a model whose output is offset."""

from __future__ import annotations

import numpy as np
import pytest

from apnet_tf.training.last_layer import Moments, refit_last_layer, ridge_toward


def weighted_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    n, p = 300, 6
    feats = rng.normal(size=(n, p))
    cats = np.where(np.arange(n) < 240, "payne", np.where(np.arange(n) < 280, "mstar", "yso"))
    z = np.stack([feats @ rng.normal(size=p) + 0.3 * (cats == "mstar")
                  + rng.normal(0, 0.1, n) for _ in range(3)], axis=1)
    z[rng.random((n, 3)) < 0.05] = np.nan  # missing labels
    return feats, z, cats


def test_moments_weigh_each_category_alike():
    feats, z, cats = weighted_problem()
    m = Moments()
    m.add(feats[:100], z[:100], cats[:100])  # two batches give the sums of one
    m.add(feats[100:], z[100:], cats[100:])
    a = np.hstack([feats, np.ones((len(feats), 1))])
    for k in range(3):
        ok = np.isfinite(z[:, k])
        w = np.array([1.0 / np.sum(ok & (cats == c)) for c in cats])[ok]
        gram, cross, used = m.balanced(k)
        assert sorted(used) == ["mstar", "payne", "yso"]
        assert np.allclose(gram, (a[ok] * w[:, None]).T @ a[ok])
        assert np.allclose(cross, (a[ok] * w[:, None]).T @ z[ok, k])
        x = np.linspace(-1, 1, a.shape[1])
        per = [np.mean((a[ok & (cats == c)] @ x - z[ok & (cats == c), k]) ** 2)
               for c in ("payne", "mstar", "yso")]
        assert m.mse(k, x) == pytest.approx(np.mean(per), rel=1e-10)


def test_ridge_toward_the_trained_layer():
    feats, z, cats = weighted_problem(1)
    m = Moments()
    m.add(feats, z, cats)
    gram, cross, _ = m.balanced(0)
    x0 = np.zeros(gram.shape[0])
    assert ridge_toward(gram, cross, x0, np.inf) is x0
    free = np.linalg.solve(gram, cross)  # the weighted least-squares solution
    assert np.allclose(ridge_toward(gram, cross, x0, 1e-12), free, atol=1e-8)
    stiff = ridge_toward(gram, cross, x0, 1e6)
    assert np.allclose(stiff[:-1], 0.0, atol=1e-4)  # the weights stay where they were ...
    ok = np.isfinite(z[:, 0])
    w = np.array([1.0 / np.sum(ok & (cats == c)) for c in cats])[ok]
    # ... and the free intercept takes the category-weighted mean of the labels
    assert stiff[-1] == pytest.approx(np.sum(w * z[ok, 0]) / np.sum(w), abs=1e-4)


def test_refit_removes_an_output_offset(records, tmp_path):
    from apnet_tf.model.network import build_model
    from apnet_tf.training.last_layer import moments

    model = build_model([4700.0, 2.9, -0.2], [730.0, 1.2, 0.3])
    fc3 = model.get_layer("fc3")
    w, b = fc3.get_weights()
    fc3.set_weights([w, b + 3.0])  # every prediction 3 standard deviations off
    info = refit_last_layer(model, str(records), batch_size=64, penalties=(1e-3, np.inf))
    assert all(after < before for after, before in zip(info["dev_mse_after"],
                                                       info["dev_mse_before"]))
    assert info["penalty"] == [1e-3, 1e-3, 1e-3]
    # the intercept's normal equation: the category means of the training residuals add to 0
    train = moments(model, str(records), "train", 64)
    w, b = fc3.get_weights()
    for k in range(3):
        x = np.append(w[:, k], b[k]).astype(np.float64)
        cats = [c for c in train.gram if train.count[c][k] > 0]
        # the last row of A^T A x - A^T z is the sum of the residuals (A's last column is 1)
        mean_resid = [(train.gram[c][k] @ x - train.cross[c][k])[-1] / train.count[c][k]
                      for c in cats]
        assert len(cats) == 3 and abs(sum(mean_resid)) < 1e-4


def test_fit_ends_with_the_refit_and_saves_it(records, tmp_path):
    import keras

    from apnet_tf.training.fitting import fit
    from apnet_tf.training.recipes import get_recipe

    def fc3(path):
        return keras.models.load_model(path).get_layer("fc3").get_weights()

    res = fit(str(records), str(tmp_path / "on"), stage="pretrain",
              recipe=get_recipe("default", epochs=1, refit_last_layer=True))
    assert res.last_layer is not None and len(res.last_layer["penalty"]) == 3
    assert sum(res.last_layer["train_stars"].values()) > 0
    saved = fc3(str(tmp_path / "on" / "best.keras"))
    for a, b in zip(saved, res.model.get_layer("fc3").get_weights()):
        assert np.array_equal(a, b)  # best.keras holds the refitted layer
    if any(p is not None for p in res.last_layer["penalty"]):
        assert not np.array_equal(saved[1], fc3(str(tmp_path / "on" / "pretrained.keras"))[1])
    off = fit(str(records), str(tmp_path / "off"), stage="pretrain",
              recipe=get_recipe("default", epochs=1))  # off by default
    assert off.last_layer is None
    for a, b in zip(fc3(str(tmp_path / "off" / "best.keras")),
                    fc3(str(tmp_path / "off" / "pretrained.keras"))):
        assert np.array_equal(a, b)
    assert get_recipe("paper").refit_last_layer is False
    assert get_recipe("default").refit_last_layer is False
