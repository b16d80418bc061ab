"""Spikes masked before the network (APNET_FLAG bit SPIKES, N_SPIKES) and the novelty flag
(bits NOVEL and FAR_FROM_TRAINING, NOVELTY, novelty.json) on every model path."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from apnet_tf.errors import ApnetError
from apnet_tf.io.catalog_flags import BAD_BITS, flag_value
from apnet_tf.io.spectra import read_apstar
from apnet_tf.io.spikes import find_spikes

SPIKES = flag_value("SPIKES")


def _spiked_copy(src, dst, factor: float = 5.0) -> int:
    """Copy an apStar file with one pixel (a usable one, in a quiet stretch) raised to
    ``factor`` times the median flux; returns the pixel."""
    spec = read_apstar(str(src))
    ok = ~spec.bad & (spec.flux > 0)
    quiet = np.flatnonzero(np.convolve(ok, np.ones(9), "same") == 9)
    pixel = int(quiet[len(quiet) // 2])
    level = float(np.median(spec.flux[ok]))
    with fits.open(src) as hdul:
        data = hdul[1].data.copy()
        row = data if data.ndim == 1 else data[0]
        row[pixel] = factor * level
        hdul[1].data = data
        hdul.writeto(dst)
    return pixel


def test_a_spike_injected_into_a_real_file_is_found(apstar_files, tmp_path):
    src = apstar_files[0]
    before = find_spikes(*(a[None] for a in _arrays(read_apstar(str(src)))))[0]
    pixel = _spiked_copy(src, tmp_path / src.name)
    after = find_spikes(*(a[None] for a in _arrays(read_apstar(str(tmp_path / src.name)))))[0]
    assert after[pixel] and not before[pixel]
    assert after.sum() == before.sum() + 1


def _arrays(spec):
    return spec.flux, spec.err, spec.bad


def test_synthetic_spectra_give_no_spike(survey):
    """Noise as the error array says, lines as wide as the line spread function: nothing."""
    files = sorted(survey.glob("*.fits"))[:40]
    specs = [read_apstar(str(f)) for f in files]
    found = find_spikes(*(np.stack(a) for a in zip(*(_arrays(s) for s in specs))))
    assert found.sum() == 0


def test_infer_masks_flags_and_counts_a_spike(apstar_files, untrained_run, tmp_path):
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.model.loading import load_model

    src = apstar_files[0]
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(src, clean / src.name)
    spiked = tmp_path / "spiked"
    spiked.mkdir()
    _spiked_copy(src, spiked / src.name)
    model = load_model(str(untrained_run))
    a = predict_catalog(model, [str(clean)], mc=0).catalog
    b = predict_catalog(model, [str(spiked)], mc=0).catalog
    assert int(b["N_SPIKES"][0]) == int(a["N_SPIKES"][0]) + 1
    assert b["APNET_FLAG"][0] & SPIKES
    assert b.meta["SPIKES"] == "masked"
    # masked as the file masks a pixel: the network's answer is the clean file's with that
    # pixel masked, not the spike's (an untrained network moves with any pixel)
    src_spec = read_apstar(str(src))
    spec = read_apstar(str(spiked / src.name))
    pixel = int(np.flatnonzero(spec.flux != src_spec.flux)[0])
    masked = src_spec.flux.copy()
    masked[pixel] = 0.0
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_fits_unit
    from apnet_tf.inference.screening import mask_batch_spikes

    batch, _ = read_fits_unit(plan_units([str(spiked)], 8).units[0])
    mask_batch_spikes(batch)
    assert batch.flux[0, pixel] == 0.0 and batch.bad[0, pixel] and batch.err[0, pixel] >= 1e9


def test_a_published_network_gets_the_authors_input_with_its_spikes_flagged(apstar_files,
                                                                            tmp_path):
    """Parity with the authors' numbers: a network with published conventions is given the
    file's flux as it is; its spikes are counted and flagged all the same."""
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_fits_unit
    from apnet_tf.inference.screening import mask_batch_spikes, masks_spikes
    from apnet_tf.model.published import conventions

    fake = type("M", (), {"conventions": conventions("anet1")})()
    assert not masks_spikes(fake) and masks_spikes(type("M", (), {"conventions": None})())
    src = apstar_files[0]
    _spiked_copy(src, tmp_path / src.name)
    batch, _ = read_fits_unit(plan_units([str(tmp_path)], 8).units[0])
    flux = batch.flux.copy()
    n = mask_batch_spikes(batch, mask=False)
    assert n[0] >= 1 and np.array_equal(batch.flux, flux)


def _stars(rng, n, shape):
    """n spectra: a shape (8575,) with a few smooth variations, noise 1%, a chip gap."""
    base = 100.0 * shape
    t = np.linspace(0, 1, 8575)
    flux = base * (1 + rng.normal(0, 0.05, (n, 1)) * np.sin(6 * t)
                   + rng.normal(0, 0.05, (n, 1)) * np.cos(11 * t))
    err = np.full_like(flux, 1.0)
    flux = flux + rng.normal(0, 1.0, flux.shape)
    bad = np.zeros(flux.shape, bool)
    bad[:, 3000:3200] = True
    flux[bad], err[bad] = 0.0, 1e10
    return flux, err, bad


def test_novelty_separates_another_kind_of_star_and_round_trips(tmp_path):
    from apnet_tf.model.novelty import NOVELTY, fit_reference, read_novelty

    rng = np.random.default_rng(0)
    pix = np.arange(8575)
    cool = 1 - 0.3 * np.exp(-0.5 * ((pix[:, None] - np.arange(100, 8500, 97)) / 1.5) ** 2).sum(1)
    hot = 1 - 0.3 * np.exp(-0.5 * ((pix[:, None] - np.arange(150, 8500, 211)) / 1.5) ** 2).sum(1)
    ref = fit_reference(*_stars(rng, 400, cool), source="training stars")
    ordinary = ref.novelty(*_stars(rng, 200, cool))
    other = ref.novelty(*_stars(rng, 50, hot))
    assert np.mean(ordinary > 1) <= 0.02
    assert np.all(other > 3)  # far beyond: FAR_FROM_TRAINING, BAD
    ref.save(str(tmp_path / NOVELTY))
    back = read_novelty(str(tmp_path))
    assert np.allclose(back.novelty(*_stars(rng, 5, hot)), ref.novelty(*_stars(
        np.random.default_rng(1), 5, hot)), rtol=0.5)
    assert back.threshold == pytest.approx(ref.threshold) and back.stars == 400
    d = json.loads((tmp_path / NOVELTY).read_text())
    d["format"] = 99
    (tmp_path / NOVELTY).write_text(json.dumps(d))
    with pytest.raises(ApnetError, match="novelty.json: novelty reference of format 99"):
        read_novelty(str(tmp_path))


def test_novelty_flags():
    from apnet_tf.io.catalog_flags import FAR_NOVEL_FACTOR, novelty_flags

    bits = novelty_flags([0.5, 1.5, FAR_NOVEL_FACTOR + 1, np.nan])
    assert list(bits) == [0, flag_value("NOVEL"), flag_value("NOVEL", "FAR_FROM_TRAINING"), 0]
    assert flag_value("FAR_FROM_TRAINING") & BAD_BITS and not flag_value("NOVEL") & BAD_BITS


def test_a_run_without_novelty_reference_still_infers(untrained_run, survey):
    """Runs made before novelty references: NOVELTY NaN, no NOVEL bit, NOVREF says why."""
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.inference.screening import NO_REFERENCE
    from apnet_tf.model.loading import load_model

    model = load_model(str(untrained_run))
    assert model.novelty is None
    cat = predict_catalog(model, [str(survey)], mc=0).catalog
    assert np.isnan(cat["NOVELTY"]).all() and cat.meta["NOVREF"] == NO_REFERENCE
    assert not (np.asarray(cat["APNET_FLAG"]) & flag_value("NOVEL", "FAR_FROM_TRAINING")).any()


def test_calibrate_writes_the_reference_that_infer_reads(untrained_run, records, tmp_path):
    """The train split's stars become the reference (calibration.reference), the run folder's
    runtime reads it, and the catalog carries NOVELTY and NOVREF."""
    from apnet_tf.calibration.reference import TRAINING_STARS, write_novelty
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.model.loading import load_model

    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    assert write_novelty(str(run), str(records), TRAINING_STARS)
    model = load_model(str(run))
    assert model.novelty is not None and model.novelty.source == TRAINING_STARS
    cat = predict_catalog(model, [str(records)], mc=0).catalog
    assert np.isfinite(cat["NOVELTY"]).all()
    assert cat.meta["NOVREF"] == f"{model.novelty.stars} {TRAINING_STARS}"
    train = np.asarray(cat["SPLIT"]) == "train"
    assert np.mean(np.asarray(cat["NOVELTY"])[train] > 1) <= 0.01


def test_the_reference_travels_with_an_export(untrained_run, records, survey, tmp_path):
    """A SavedModel and a TFLite file of a run with a novelty reference carry it (named in
    export_metadata.json) and give the run folder's NOVELTY, star for star."""
    from apnet_tf.calibration.reference import TRAINING_STARS, write_novelty
    from apnet_tf.export.model_export import export_model
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.model.loading import load_model

    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    assert write_novelty(str(run), str(records), TRAINING_STARS)
    meta = export_model(str(run), str(tmp_path / "net"), tflite=["float32"], mc=4)
    assert meta["novelty"]["file"] == "novelty.json"
    assert meta["novelty"]["source"] == TRAINING_STARS
    paths = [run, tmp_path / "net" / str(meta["version"]),
             tmp_path / "net" / meta["tflite"]["float32"]["file"]]
    novelty = [np.asarray(predict_catalog(load_model(str(p)), [str(survey)], mc=0)
                          .catalog["NOVELTY"]) for p in paths]
    assert np.isfinite(novelty[0]).all()
    np.testing.assert_allclose(novelty[1], novelty[0])
    np.testing.assert_allclose(novelty[2], novelty[0])


def _novelty_lines(lines) -> list[str]:
    return [line for line in lines if "no novelty reference" in line]


def test_infer_and_the_notebook_say_once_why_novelty_is_empty(untrained_run, records, survey,
                                                             tmp_path):
    """Fails on the old code: a model without novelty.json gave a NaN NOVELTY column with no
    word on the command line or in a notebook. One note (infer's stderr; a warning from
    predict and predict_files) names the model and the calibrate command that writes one;
    none for a model with a reference."""
    import warnings

    from cli_helpers import cli

    import apnet_tf
    from apnet_tf.calibration.reference import TRAINING_STARS, write_novelty

    files = [str(f) for f in sorted(survey.glob("apStar-*.fits"))[:3]]
    spec = read_apstar(files[0])
    with_ref = tmp_path / "with_ref"
    shutil.copytree(untrained_run, with_ref)
    assert write_novelty(str(with_ref), str(records), TRAINING_STARS)
    shown = {}
    for run, expected in ((untrained_run, 1), (with_ref, 0)):
        res = cli("infer", "--model", run, "--spectra", *files, "--out",
                  tmp_path / f"{run.name}.csv", "--mc", 0)
        assert res.exit_code == 0, res.output
        shown[expected] = _novelty_lines(res.stderr.splitlines())
        assert len(shown[expected]) == expected, res.stderr
        assert "no novelty reference" not in res.stdout
        model = apnet_tf.load(run)
        for call in (lambda: model.predict_files(files, mc=0),
                     lambda: model.predict(spec.flux, spec.err, mc=0)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cat = call()
            assert len(_novelty_lines(str(w.message) for w in caught)) == expected
            assert np.isnan(cat["NOVELTY"]).all() == bool(expected)
    note = shown[1][0]
    assert note.startswith(f"note: {untrained_run}: no novelty reference (novelty.json)"), note
    for words in ("NOVELTY is empty", f"apnet-tf calibrate --model {untrained_run} --records"):
        assert words in note, note
