"""Golden outputs of the authors' own APOGEE Net I and II code, for tests/test_published_mc.py.

Runs the authors' code from checkouts outside this repository (nothing of it is copied here) on
the real apStar files, with seeded stand-in weights and fixed noise draws, and writes what their
code printed or returned to tests/golden/net1.json and tests/golden/net2.json.

* Net I: sdss/astra ``python/astra/contrib/apogeenet/model.py`` at d26de04 (2021-07-23, the
  last Net I version before APOGEENet II replaced it): ``Net``, ``create_flux_tensor`` (cleaning,
  the 1e10 rule, the 5x median cap, draw 0 unperturbed) and ``predict`` (mean and ``np.std`` of
  the draws). Its driver (``operators.py``) needs astra's database, so the spectrum is read here
  as astra's apStar loader and operator did: flux = row 0 of HDU 1; error = (HDU 2 ** -2)[0] **
  -0.5 (the loader kept an inverse variance). The plain pass is ``predict`` of draw 0 alone.
* Net II: hutchresearch/ApogeeNet2 9e3a225, the whole ``apogeenet2.pipeline.Pipeline`` (its
  dataset reading an allField-style table, its model, ``_calc_uncertainties`` and CSV writer),
  on a table and SAS-style folder written under ``--work``.

Weights: the tests' stand-ins (tests/published_weights.py: ``torch.manual_seed(1)`` / ``(2)``,
the authors' class's own initialisation, ``scaled_fc3`` over the 24 DR13 spectra; Net II's
photometry ``photometry_for(24)``); each file records their ``fingerprint`` for the tests.
Draws: the authors' ``torch.randn`` call for star ``i`` of file set ``s`` (0: DR13, 1: DR17)
returns ``np.random.default_rng([SEED, s, i]).standard_normal((MC, 8575), dtype=np.float32)``.

    python bench/golden_net12.py --astra ASTRA_CHECKOUT --apogeenet2 APOGEENET2_CHECKOUT \\
        [--work /tmp/net12] [--out tests/golden] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the stand-in weights' recipe
from published_weights import fingerprint, photometry_for, scaled_fc3  # noqa: E402

__all__ = ["SEED", "MC", "N_PIXELS", "draws", "main"]

SEED = 12
MC = 100
N_PIXELS = 8575
ASTRA_COMMIT = "d26de045d7d39fcac24b4420e40d1b8b3a3696f3"
APOGEENET2_COMMIT = "9e3a2257f46403ed4ba3533af6a3b4db0166bcd7"
ASTRA_MODEL = "python/astra/contrib/apogeenet/model.py"
PHOT_COLUMNS = ("GAIAEDR3_PARALLAX", "GAIAEDR3_PHOT_G_MEAN_MAG", "GAIAEDR3_PHOT_BP_MEAN_MAG",
                "GAIAEDR3_PHOT_RP_MEAN_MAG", "J", "H", "K")
DRAWS_RECIPE = ("np.random.default_rng([12, s, i]).standard_normal((100, 8575), "
                "dtype=np.float32) for star i of file set s (0: dr13, 1: dr17)")
WEIGHTS_RECIPE = ("torch.manual_seed(SEED); the authors' class, eval(); fc3 rescaled so that "
                  "the standardised outputs over the 24 DR13 spectra (row 0 of HDU 1, NaN -> 0) "
                  "have mean 0 and std 0.5 (tests/published_weights.py scaled_fc3); SEED 1 for "
                  "Net I, 2 for Net II (photometry: photometry_for(24))")


def draws(set_index: int, star: int) -> np.ndarray:
    """The fixed standard normals of one star: (MC, 8575) float32."""
    return np.random.default_rng([SEED, set_index, star]).standard_normal(
        (MC, N_PIXELS), dtype=np.float32)


def _git_head(path: str) -> str:
    out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True,
                         text=True)
    return out.stdout.strip() or "unknown"


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _file_sets(data: str) -> dict[str, list[str]]:
    import glob

    return {"dr13": sorted(glob.glob(os.path.join(data, "apogee_dr13", "apStar", "apStar-*.fits"))),
            "dr17": sorted(glob.glob(os.path.join(data, "apogee_dr17", "apStar-*.fits")))}


def _objid(path: str) -> str:
    from astropy.io import fits

    with fits.open(path) as hdul:
        return str(hdul[0].header["OBJID"]).strip()


def _scaling_flux(files: list[str]):
    """The test fixtures' flux: row 0 of HDU 1, NaN -> 0, float32, (n, 1, 8575)."""
    import torch
    from astropy.io import fits

    rows = []
    for f in files:
        with fits.open(f) as hdul:
            rows.append(np.nan_to_num(np.atleast_2d(hdul[1].data)[0]).astype(np.float32))
    return torch.from_numpy(np.stack(rows))[:, None, :]


@contextlib.contextmanager
def _fixed_randn(set_index: int, log: list):
    """torch.randn returns the next star's fixed draws (the authors draw once per star)."""
    import torch

    original = torch.randn

    def randn(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
        assert tuple(shape)[0] == MC and int(np.prod(shape)) == MC * N_PIXELS, shape
        eps = draws(set_index, len(log))
        log.append(shape)
        return torch.from_numpy(eps).reshape(shape)

    torch.randn = randn
    try:
        yield
    finally:
        torch.randn = original


def run_net1(astra: str, sets: dict, scaling) -> dict:
    """Net I through astra's model.py: plain pass and Monte Carlo of every file."""
    import torch
    from astropy.io import fits

    mod = _load("astra_apogeenet_model", os.path.join(astra, ASTRA_MODEL))
    torch.manual_seed(1)
    state = scaled_fc3(mod.Net().eval(), scaling).state_dict()
    model = mod.Net()
    model.load_state_dict(state, strict=False)  # as astra loaded it
    model.eval()
    out = {"weights": {"recipe": WEIGHTS_RECIPE, "fingerprint": fingerprint(state)}, "sets": {}}
    for s, (name, files) in enumerate(sets.items()):
        rows, calls = {"plain": [], "mc": []}, []
        with _fixed_randn(s, calls):
            for path in files:
                with fits.open(path) as image:  # astra's apStar loader, then its operator
                    flux = np.array(np.atleast_2d(image[1].data)[0])
                    ivar = np.atleast_2d(image[2].data) ** -2
                tensor = mod.create_flux_tensor(flux=flux, error=ivar[0] ** -0.5,
                                                device=torch.device("cpu"),
                                                num_uncertainty_draws=MC, large_error=1e10)
                rows["mc"].append(mod.predict(model, tensor))
                rows["plain"].append(mod.predict(model, tensor[:1]))
        assert len(calls) == len(files)
        out["sets"][name] = _net1_set(files, rows)
    return out


def _net1_set(files: list[str], rows: dict) -> dict:
    keys = ("logg", "teff", "fe_h")
    return {"files": [os.path.basename(f) for f in files],
            "apogee_id": [_objid(f) for f in files],
            "plain": {k: [float(r[k]) for r in rows["plain"]] for k in keys},
            "mc": {k: [float(r[k]) for r in rows["mc"]] for k in keys + tuple(f"u_{k}"
                                                                        for k in keys)}}


def _allfield(folder: str, files: list[str], phot: np.ndarray) -> None:
    """An allField-style table and TELESCOPE/FIELD/FILE links to the files, as their dataset
    reads them."""
    from astropy.table import Table

    os.makedirs(os.path.join(folder, "apo25m", "FIELD"), exist_ok=True)
    for f in files:
        link = os.path.join(folder, "apo25m", "FIELD", os.path.basename(f))
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(f), link)
    cols = {"APOGEE_ID": [_objid(f) for f in files], "TELESCOPE": ["apo25m"] * len(files),
            "FIELD": ["FIELD"] * len(files), "FILE": [os.path.basename(f) for f in files]}
    cols.update({c: phot[:, j] for j, c in enumerate(PHOT_COLUMNS)})
    Table(cols).write(os.path.join(folder, "allField.fits"), overwrite=True)


def _net2_weights(apogeenet2: str, scaling, phot: np.ndarray) -> dict:
    import torch

    sys.path.insert(0, apogeenet2)
    from apogeenet2.dataset import AP2_Dataset
    from apogeenet2.model import Model

    m = torch.from_numpy(AP2_Dataset.normalize_metadata(AP2_Dataset, phot).astype(np.float32))
    torch.manual_seed(2)
    return scaled_fc3(Model.APOGEENet().eval(), scaling, m).state_dict()


def _pipeline(state: dict, folder: str):
    """Their Pipeline on ``folder``, its Model given ``state`` instead of its model.pt."""
    import torch
    from apogeenet2.pipeline import Pipeline

    original = torch.load
    torch.load = lambda path, **kw: {k: v.clone() for k, v in state.items()}
    try:
        return Pipeline(folder, os.path.join(folder, "predictions.csv"), "allField.fits",
                        uncertainty_count=MC)
    finally:
        torch.load = original


def run_net2(apogeenet2: str, sets: dict, scaling, work: str) -> dict:
    """Net II through hutchresearch's Pipeline: its CSV, plus the per-draw outputs of its
    model (for the Teff statistics in K, which their code does not compute)."""
    phot24 = photometry_for(len(sets["dr13"]))
    state = _net2_weights(apogeenet2, scaling, phot24)
    out = {"weights": {"recipe": WEIGHTS_RECIPE, "fingerprint": fingerprint(state)}, "sets": {}}
    for s, (name, files) in enumerate(sets.items()):
        phot = phot24[:len(files)]
        folder = os.path.join(work, f"net2_{name}")
        _allfield(folder, files, phot)
        pipe, outputs, calls = _pipeline(state, folder), [], []
        predict = pipe.model.predict_spectra

        def spy(spectra, metadata, predict=predict, outputs=outputs):
            pred = predict(spectra, metadata)
            outputs.append(pred.detach().numpy().astype(np.float64).copy())
            return pred

        pipe.model.predict_spectra = spy
        with _fixed_randn(s, calls):
            pipe.predict()
        assert len(calls) == len(files) and len(outputs) == 2 * len(files)
        out["sets"][name] = _net2_set(files, folder, phot, outputs)
    return out


def _net2_set(files: list[str], folder: str, phot: np.ndarray, outputs: list) -> dict:
    from astropy.table import Table

    csv = Table.read(os.path.join(folder, "predictions.csv"), format="ascii.csv")
    assert [str(v) for v in csv["APOGEE_ID"]] == [_objid(f) for f in files]
    teff = np.stack([10.0 ** outputs[2 * i + 1][:, 1] for i in range(len(files))])
    lower = np.sort(teff, axis=1)[:, (MC - 1) // 2]
    return {"files": [os.path.basename(f) for f in files],
            "apogee_id": [str(v) for v in csv["APOGEE_ID"]],
            "photometry": {c: [None if not np.isfinite(v) else float(v) for v in phot[:, j]]
                           for j, c in enumerate(PHOT_COLUMNS)},
            "csv": {c: [float(v) for v in csv[c]] for c in csv.colnames if c != "APOGEE_ID"},
            "derived_teff_k": {
                "what": "from the per-draw outputs of their model in that run: 10**logTeff per "
                        "draw, then the lower median and the std with ddof 1 and 0",
                "median": lower.tolist(), "std_ddof1": teff.std(axis=1, ddof=1).tolist(),
                "std_ddof0": teff.std(axis=1, ddof=0).tolist()}}


def _write(path: str, record: dict) -> None:
    with open(path, "w") as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--astra", required=True, help="a checkout of sdss/astra (at d26de04)")
    ap.add_argument("--apogeenet2", required=True,
                    help="a checkout of hutchresearch/ApogeeNet2 (at 9e3a225)")
    ap.add_argument("--work", default="/tmp/golden_net12", help="scratch folder (outside the repo)")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "golden"))
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    sets = _file_sets(args.data)
    assert len(sets["dr13"]) == 24, "the 24 DR13 apStar files are needed for the weights"
    scaling = _scaling_flux(sets["dr13"])
    common = {"script": "bench/golden_net12.py",
              "command": " ".join(["bench/golden_net12.py", *(argv or sys.argv[1:])]), "mc": MC,
              "draws": {"seed": SEED, "recipe": DRAWS_RECIPE},
              "versions": {"torch": torch.__version__, "numpy": np.__version__}}
    for name, run, src, want, path in (
            ("anet1", lambda: run_net1(args.astra, sets, scaling), args.astra, ASTRA_COMMIT,
             "sdss/astra " + ASTRA_MODEL),
            ("anet2", lambda: run_net2(args.apogeenet2, sets, scaling, args.work),
             args.apogeenet2, APOGEENET2_COMMIT, "hutchresearch/ApogeeNet2 apogeenet2/")):
        head = _git_head(src)
        if head != want:
            print(f"warning: {src} is at {head}, not {want}", file=sys.stderr)
        record = {"network": name, "source": {"code": path, "commit": head}, **common, **run()}
        _write(os.path.join(args.out, f"net{name[-1]}.json"), record)


if __name__ == "__main__":
    main()
