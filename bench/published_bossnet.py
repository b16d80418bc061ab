"""APOGEE Net III and BOSS Net: this package's inference against the authors' PyTorch forward pass,
and the effect of keeping bad pixels at their fill value in the Monte Carlo.

The goldens' stand-in weights (tests/golden/*_golden.json: seeded, in the authors' state_dict
layout, 72.6 M parameters) are written as the authors' chunk folder (``model_chunk_0..9``) and
imported with ``import_torch(..., arch=...)``; the run is loaded as ``infer`` loads it. The PyTorch
side is tests/bossnet_reference.py, an independent implementation of their ``BossNet`` class
that loads their state_dict strictly (``tests/test_bossnet.py`` checks it against their own
code's outputs, the goldens), with their pre-processing (``log_scale_flux``) inside the timing.
Spectra: the real apStar files of the goldens (APOGEE Net III; tiled to ``--stars``) or the
synthetic BOSS spec files (BOSS Net), read once, outside the timing, under astra's convention.

* plain: ``predict`` on ``--stars`` spectra in one call, against the reference's forward pass
  on the same spectra in one batch (``eval``, ``no_grad``, float32, all threads);
* Monte Carlo, mc = 20 (astra's number): ``monte_carlo`` on ``--mc-stars`` stars against their
  loop, one star at a time: mc noised copies, log-scaled over the stack (astra), one batch;
* bad pixels (APOGEE Net III only): over the first ``--mc-stars`` real apStar files, the median
  over the stars of |Teff(median of the draws) - Teff(un-noised)| and of the Teff sigma, with
  every pixel noised (the authors') and with bad pixels kept at their fill value
  (``--mc-bad-pixels fill``).

The runners alternate ``--rounds`` times and each keeps its best rate.

    python bench/published_bossnet.py [--arch anet3 bossnet] [--stars 16] [--mc-stars 4]
        [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the PyTorch reference, the goldens
sys.path.insert(0, os.path.join(HERE, ".."))  # apnet_tf from this checkout
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import CACHE, add_tag, best_rates, machine, rate, report  # noqa: E402
from published import against_torch  # noqa: E402

MC = 20
DATA = Path(HERE).parent.parent / "shared" / "data"


def files(arch: str, golden: dict, folder: Path) -> list[Path]:
    """The goldens' spectra: the real apStar files, or the synthetic BOSS files written here."""
    from bossnet_fixtures import write_boss_spec

    if arch == "anet3":
        return [DATA / s["file"] for s in golden["spectra"]]
    paths = [folder / s["file"] for s in golden["spectra"]]
    for k, p in enumerate(paths):
        write_boss_spec(p, k)
    return paths


def inputs(arch: str, paths, mc_bad_pixels: str = "noise"):
    """The package's network inputs of ``paths`` under astra's convention."""
    from apnet_tf.data.planning import FITS_KINDS, Unit
    from apnet_tf.data.readers import read_unit
    from apnet_tf.model.bossnet_conventions import conventions
    from apnet_tf.model.network_inputs import network_inputs

    batch, failures = read_unit(Unit(0, FITS_KINDS["boss" if arch == "bossnet" else "apogee"],
                                     tuple(map(str, paths))))
    assert not failures, failures
    return network_inputs(conventions(arch, "astra"), batch, mc_bad_pixels)


def imported_run(arch: str) -> tuple[Path, dict, Path]:
    """(run folder, golden, its cache folder): the goldens' stand-in weights written as the
    authors' chunk folder and imported as ``import-torch --arch`` imports them."""
    import json
    import shutil

    from test_bossnet_infer import write_chunks

    from apnet_tf.model.torch_weights import import_torch

    golden = json.loads((Path(HERE).parent / "tests" / "golden" / f"{arch}_golden.json")
                        .read_text())
    folder = Path(CACHE) / f"published_{arch}"
    shutil.rmtree(folder, ignore_errors=True)
    import_torch(str(write_chunks(arch, folder / "chunks")), str(folder / "run"), arch=arch)
    shutil.rmtree(folder / "chunks")
    return folder / "run", golden, folder


def setup(arch: str):
    """(run folder loaded as infer loads it, reference network, golden, cache folder)."""
    import bossnet_reference as ref
    from bossnet_fixtures import apply_recipe, seeded_state

    from apnet_tf.model.bossnet_weights import bossnet_shapes
    from apnet_tf.model.loading import load_model

    run, golden, folder = imported_run(arch)
    recipe = golden["weights"]
    net = ref.load(apply_recipe(seeded_state(bossnet_shapes(arch), recipe["seed"]), recipe), arch)
    return load_model(str(run)), net, golden, folder


def torch_mc(torch, ref, net, arch, stars):
    """Their Monte Carlo per star of ``stars`` ((flux, err, wavelength or None) on the native
    pixels): mc draws of N(0, 1) noise, astra's stack-wide clip."""
    def run():
        for flux, err, wave in stars:
            eps = torch.randn((MC, len(flux))).numpy()
            ref.monte_carlo(net, flux, err, eps, arch, "astra", wave)
    return run


def bad_pixel_effect(model, paths) -> dict:
    """Median over the stars of |Teff(MC median) - Teff(plain)| and of sigma Teff (K), with
    every pixel noised and with bad pixels kept at their fill value."""
    out = {}
    for variant in ("noise", "fill"):
        x = inputs("anet3", paths, variant)
        got = model.monte_carlo(x.mc_flux, x.err, x.bad, MC, seed=2028)
        out[f"teff_shift_k_{variant}"] = round(float(np.median(
            np.abs(got["p50"][:, 0] - got["value"][:, 0]))), 1)
        out[f"teff_sigma_k_{variant}"] = round(float(np.median(got["std"][:, 0])), 1)
    return out


def measure(arch: str, stars: int, mc_stars: int, seconds: float, rounds: int) -> dict:
    import bossnet_reference as ref
    import torch

    torch.set_num_threads(os.cpu_count())
    model, net, golden, folder = setup(arch)
    paths = files(arch, golden, folder)
    x = inputs(arch, paths)
    tile = np.arange(stars) % len(paths)
    flux = x.flux[tile]
    # the reference reads the files its own way (the authors' rules), then the same tiling
    read = [(*ref.apstar_rows(p, "astra"), None) if arch == "anet3"
            else ref.boss_inputs(p, "astra") for p in paths]
    ref_flux = np.stack([r[0] if r[2] is None else ref.resample(r[0], r[2]) for r in read])[tile]
    ours, theirs = model.predict(flux), ref.plain(net, ref_flux, arch)
    theirs_k = np.column_stack([10.0 ** theirs[:, 1], theirs[:, 0], theirs[:, 2:]])
    spread = np.array([s["astra"]["plain"] for s in golden["spectra"]]).std(axis=0)
    spread = np.concatenate([[np.std(10.0 ** np.array([s["astra"]["plain"][1]
                                                       for s in golden["spectra"]]))],
                             spread[[0, 2, 3][:len(spread) - 1]]])
    worst = float((np.abs(ours - theirs_k) / spread).max())
    m = slice(0, mc_stars)
    wave = None if x.wavelength is None else x.wavelength[m]
    more = {} if wave is None else {"wavelength": wave}
    runners = {
        "plain": (lambda: model.predict(flux), stars),
        "torch_plain": (lambda: ref.plain(net, ref_flux, arch), stars),
        "mc": (lambda: model.monte_carlo(x.mc_flux[m], x.err[m], None, MC, seed=1, **more),
               mc_stars),
        "torch_mc": (torch_mc(torch, ref, net, arch, read[:mc_stars]), mc_stars)}
    best = best_rates(runners, rounds, seconds, timer=partial(rate, calls=1))
    figures = {"arch": arch, "params": int(model.model.count_params()),
               "stars_per_call": stars, "mc": MC, "mc_stars_per_call": mc_stars,
               "max_abs_diff_over_spread_plain": worst, **against_torch(best, 2)}
    if arch == "anet3":
        figures["bad_pixels"] = {"stars": mc_stars,
                                 **bad_pixel_effect(model, paths[:mc_stars])}
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["anet3", "bossnet"],
                    choices=["anet3", "bossnet"])
    ap.add_argument("--stars", type=int, default=16, help="spectra per plain call")
    ap.add_argument("--mc-stars", type=int, default=4, help="stars per Monte Carlo call")
    ap.add_argument("--seconds", type=float, default=20.0, help="per runner, over all rounds")
    ap.add_argument("--rounds", type=int, default=2)
    add_tag(ap)
    args = ap.parse_args()
    import torch

    figures = {"machine": machine(), "torch_threads": torch.get_num_threads()}
    for arch in args.arch:
        figures[arch] = measure(arch, args.stars, args.mc_stars, args.seconds, args.rounds)
    report("published_bossnet", figures, args.tag)


if __name__ == "__main__":
    main()
