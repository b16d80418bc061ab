"""APOGEE Net II: this package's inference against the authors' PyTorch forward pass.

Seeded random weights in Net II's state_dict layout (``tests/published_reference.py``, written
from hutchresearch/ApogeeNet2's code) are saved as a .pt file and imported with
``import_torch(..., arch="anet2")`` into a run folder, which is loaded the way ``infer`` loads it
(``load_model``). Then, on the same in-memory spectra and raw photometry:

* plain: ``KerasRuntime.predict`` at batch 256 (what ``infer --mc 0`` calls per batch) against the
  authors' forward pass at batch 256: their pre-processing (``np.nan_to_num`` of the flux, fill
  values and z-scores of the photometry, done per star in their ``dataset.py``), ``eval()``,
  ``torch.no_grad``, then their de-standardisation and 10**log Teff;
* Monte Carlo, mc = 100: ``KerasRuntime.monte_carlo`` (the anet2 style: the package's chunked
  Monte Carlo) against the authors' ``pipeline.py`` loop, one star at a time: a deterministic
  pass, then mc noised copies of the flux (sigma: err, 1e10 -> flux, clipped at 5x the median)
  through the network with the photometry repeated, then the median and std of the draws.

The runners alternate ``--rounds`` times and each keeps its best rate.

    python bench/published.py [--seconds 6] [--mc-stars 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the PyTorch reference networks
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import CACHE, add_tag, best_rates, machine, report  # noqa: E402
from infer import spectra  # noqa: E402

BATCH = 256
MC = 100


def photometry(n: int, seed: int = 0) -> np.ndarray:
    """(n, 7) plausible raw [parallax mas, G, BP, RP, J, H, K]; every 10th star misses its
    parallax and every 7th has a 99.999 G, as allField rows do, so the fill rule runs."""
    rng = np.random.default_rng(seed)
    base = np.array([1.0, 13.0, 13.6, 12.3, 11.2, 10.6, 10.4])
    phot = base + rng.normal(0, [1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], (n, 7))
    phot[::10, 0] = np.nan
    phot[::7, 1] = 99.999
    return phot


def net2_run(torch, ref, flux, phot) -> tuple[str, object]:
    """A run folder imported from seeded random Net II weights, and the PyTorch network. fc3
    is rescaled (as in tests/test_published.py) so that the outputs differ from star to star
    by about half of each target's sigma, as a trained network's do."""
    from apnet_tf.model.torch_weights import import_torch

    folder = os.path.join(CACHE, "published")
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(2)
    net = ref.ApogeeNetII().eval()
    with torch.no_grad():
        z = net(torch.from_numpy(flux)[:, None, :],
                torch.from_numpy(ref.normalise_photometry(phot))).numpy().astype(np.float64)
        a = 0.5 / z.std(axis=0)
        net.fc3.weight.mul_(torch.from_numpy(a[:, None]).float())
        net.fc3.bias.copy_(torch.from_numpy(a * net.fc3.bias.numpy() - (z * a).mean(axis=0)))
    pt = os.path.join(folder, "net2.pt")
    torch.save(net.state_dict(), pt)
    import_torch(pt, os.path.join(folder, "run"), arch="anet2", overwrite=True)
    return os.path.join(folder, "run"), net


def torch_plain(torch, ref, net):
    """The authors' prediction of a batch: (flux, photometry) -> (B, 3) Teff K, log g, [Fe/H]."""
    def run(flux, phot):
        f = torch.from_numpy(ref.net2_clean(flux))[:, None, :]
        m = torch.from_numpy(ref.normalise_photometry(phot))
        with torch.no_grad():
            logs = ref._net2_destandardise(net(f, m))
        return torch.stack([10.0 ** logs[:, 1], logs[:, 0], logs[:, 2]], dim=1).numpy()
    return run


def torch_mc(torch, ref, net, r: int = MC):
    """hutchresearch's pipeline.py per star: the deterministic pass, then r noised copies of
    the flux (photometry repeated, not noised), median and std (ddof 1) of the draws."""
    def run(flux, err, phot):
        f = torch.from_numpy(ref.net2_clean(flux))
        e = torch.from_numpy(np.nan_to_num(np.asarray(err, np.float32)))
        m = torch.from_numpy(ref.normalise_photometry(phot))
        out = []
        with torch.no_grad():
            for fi, ei, mi in zip(f, e, m):
                value = ref._net2_destandardise(net(fi[None, None, :], mi[None]))
                sigma = ref.mc_sigma(fi, ei)
                draws = torch.randn((r, 1, ref.N_PIXELS)) * sigma + fi
                logs = ref._net2_destandardise(net(draws, mi.repeat(r, 1)))
                out.append((value, torch.median(logs, dim=0).values, torch.std(logs, dim=0)))
        return out
    return run


def measure(seconds: float, mc_stars: int, rounds: int) -> dict:
    import published_reference as ref
    import torch

    from apnet_tf.model.loading import load_model

    torch.set_num_threads(os.cpu_count())
    flux, err, bad = spectra(BATCH)
    phot = photometry(BATCH)
    run, net = net2_run(torch, ref, flux, phot)
    model = load_model(run)  # as infer loads it: conventions from run.json
    # the same numbers, or the rates compare different work
    ours, theirs = model.predict(flux, phot), torch_plain(torch, ref, net)(flux, phot)
    worst = float((np.abs(ours - theirs) / theirs.std(axis=0)).max())
    plain_torch = torch_plain(torch, ref, net)
    mc_torch = torch_mc(torch, ref, net)
    fm, em, bm, pm = flux[:mc_stars], err[:mc_stars], bad[:mc_stars], phot[:mc_stars]
    runners = {"plain": (lambda: model.predict(flux, phot), BATCH),
               "torch_plain": (lambda: plain_torch(flux, phot), BATCH),
               "mc": (lambda: model.monte_carlo(fm, em, bm, MC, seed=1, photometry=pm), mc_stars),
               "torch_mc": (lambda: mc_torch(fm, em, pm), mc_stars)}
    best = best_rates(runners, rounds, seconds)
    return {"machine": machine(), "torch_threads": torch.get_num_threads(),
            "batch": BATCH, "mc": MC, "mc_stars_per_call": mc_stars,
            "max_abs_diff_over_std_plain": worst, **against_torch(best, 1)}


def against_torch(best: dict, digits: int) -> dict:
    """The figures of ``best_rates`` of the runners plain, torch_plain, mc and torch_mc: each
    rate (plain to ``digits`` decimals, the Monte Carlo to one more) and ours / PyTorch's."""
    return {"plain_spectra_per_s": round(best["plain"], digits),
            "torch_plain_spectra_per_s": round(best["torch_plain"], digits),
            "plain_over_torch": round(best["plain"] / best["torch_plain"], 2),
            "mc_stars_per_s": round(best["mc"], digits + 1),
            "torch_mc_stars_per_s": round(best["torch_mc"], digits + 1),
            "mc_over_torch": round(best["mc"] / best["torch_mc"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="per runner, over all rounds")
    ap.add_argument("--mc-stars", type=int, default=8, help="stars per Monte Carlo call")
    ap.add_argument("--rounds", type=int, default=3)
    add_tag(ap)
    args = ap.parse_args()
    report("published", measure(args.seconds, args.mc_stars, args.rounds), args.tag)


if __name__ == "__main__":
    main()
