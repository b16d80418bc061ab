"""Golden outputs of the authors' own code for APOGEE Net III and BOSS Net, for the parity tests.

It runs, unmodified, the code of two checkouts that the caller fetched (nothing of theirs is
copied into this repository):

* hutchresearch/BOSSNet (``--bossnet``, the folder holding ``bossnet/pipeline.py``): the class
  ``BossNet`` built from ``model_apogee/`` and ``model_boss/`` ``model_args.yaml``, and the
  ``ApogeeNetPipeline`` / ``BOSSNETPipeline`` ``predict`` of ``pipeline.py`` (its reader,
  collation, interpolation, log scaling, Monte Carlo, CSV), its ``franken_load`` of a chunk
  folder and ``chop_model.save_chopped_file``;
* sdss/astra (``--astra``, the folder holding ``python/astra``): ``make_prediction`` and
  ``reverse_inverse_error`` of ``pipelines/apogeenet`` and ``pipelines/bossnet`` with their
  network classes, and the apStar readers ``_transform_coadded_spectrum`` and
  ``_transform_err_to_ivar`` of ``models/apogee.py``. Their module-level code is executed
  without the imports of astra's database layer and without the ``@task`` functions, whose
  few lines around ``make_prediction`` (NaN -> 0, ivar -> error, 10**log Teff, e_teff) and
  the catalog's noise model and flags (``models/apogeenet.py``, ``models/bossnet.py``: SQL
  updates there) are written out below, as their code does them.

Weights: stand-ins in the authors' exact state_dict layout (``tests/bossnet_fixtures.py``
``seeded_state``), then, with the authors' class, the BatchNorm running statistics measured
over the golden inputs (train mode, cumulative average, one batch) and the last layer scaled so
that the standardised outputs have mean 0 and std 0.5 over them. The numbers measured are
written to the golden file, so that ``apply_recipe`` rebuilds the same weights without PyTorch.
They are saved as one ``torch.save`` file and as the authors' folder of 10 byte chunks.

Monte Carlo: the authors draw with ``torch.randn`` / ``torch.randn_like``; here both are
replaced, during the calls, by a queue of fixed draws: star k (its row in the golden file) gets
``bossnet_fixtures.fixed_draws(k, n_native_pixels, mc, seed)``, the package's own stateless
draws. Each queued array is checked against the shape their call asks for.

Usage (a few minutes on 2 cores)::

    python bench/golden_bossnet.py --bossnet /work/scratch/bossnet/BOSSNet \
        --astra /work/scratch/bossnet/astra --work /work/scratch/bossnet/work
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import glob
import json
import os
import subprocess
import sys
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

import bossnet_fixtures as fx  # noqa: E402
import torch  # noqa: E402
from astropy.io import fits  # noqa: E402

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
ARCHS = {"anet3": "model_apogee", "bossnet": "model_boss"}
STATS = {"anet3": "apogee.yaml", "bossnet": "boss.yaml"}
WEIGHT_SEED = {"anet3": 3, "bossnet": 4}


# ---------------------------------------------------------------------------------------------
# Their code, loaded from the checkouts


def load_bossnet(root: str) -> dict:
    """The hutchresearch/BOSSNet modules, imported as their __main__.py arranges it."""
    sys.path[:0] = [os.path.join(root, "bossnet"), root]
    import chop_model
    import pipeline
    import utils
    from model.boss_net import BossNet

    return {"pipeline": pipeline, "utils": utils, "chop": chop_model, "BossNet": BossNet,
            "root": os.path.join(root, "bossnet")}


def _stub_package(name: str, path: str) -> None:
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module


def _exec_filtered(path: str, name: str, keep_functions=None) -> types.ModuleType:
    """Execute a module of astra without its database imports and ``@task`` functions (or,
    with ``keep_functions``, only those top-level functions)."""
    tree = ast.parse(open(path).read(), path)
    body = []
    for node in tree.body:
        if keep_functions is not None:
            if isinstance(node, ast.FunctionDef) and node.name in keep_functions:
                body.append(node)
            continue
        if isinstance(node, ast.ImportFrom) and (
                node.module in ("peewee", "playhouse.hybrid")
                or (node.module.startswith("astra") and not node.module.startswith(
                    "astra.pipelines"))):
            continue
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            continue
        body.append(node)
    module = types.ModuleType(name)
    module.__dict__["np"] = np
    sys.modules[name] = module  # dataclasses look their module up there
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), module.__dict__)
    return module


def load_astra(root: str) -> dict:
    py = os.path.join(root, "python", "astra")
    for name in ("astra", "astra.pipelines", "astra.pipelines.apogeenet",
                 "astra.pipelines.bossnet"):
        _stub_package(name, os.path.join(py, *name.split(".")[1:]))
    return {
        "anet3": _exec_filtered(os.path.join(py, "pipelines", "apogeenet", "__init__.py"),
                                "astra_apogeenet"),
        "bossnet": _exec_filtered(os.path.join(py, "pipelines", "bossnet", "__init__.py"),
                                  "astra_bossnet"),
        "apogee": _exec_filtered(os.path.join(py, "models", "apogee.py"), "astra_models_apogee",
                                 keep_functions=("_transform_err_to_ivar",
                                                 "_transform_coadded_spectrum")),
    }


@contextlib.contextmanager
def fixed_noise(name: str, draws: list):
    """torch.<name> (randn or randn_like) serves ``draws`` in order, each checked for shape."""
    queue, original = list(draws), getattr(torch, name)

    def fake(*args, **kwargs):
        first = args[0]
        want = tuple(first.shape) if name == "randn_like" else tuple(
            first if isinstance(first, (tuple, list, torch.Size)) else args)
        if not queue:
            raise RuntimeError(f"torch.{name}{want}: no fixed draw left")
        draw = queue.pop(0)
        if tuple(draw.shape) != want:
            raise RuntimeError(f"torch.{name}: asked for {want}, the next draw is {draw.shape}")
        return torch.from_numpy(np.array(draw, np.float32))

    setattr(torch, name, fake)
    try:
        yield
    finally:
        setattr(torch, name, original)
    if queue:
        raise RuntimeError(f"torch.{name}: {len(queue)} fixed draws were not used")


@contextlib.contextmanager
def captured_median(store: list):
    """Record the input of torch.median (astra computes the Monte Carlo median, then drops it)."""
    original = torch.median

    def spy(x, *args, **kwargs):
        store.append(x.detach().clone())
        return original(x, *args, **kwargs)

    torch.median = spy
    try:
        yield
    finally:
        torch.median = original


# ---------------------------------------------------------------------------------------------
# Inputs


def apogee_files() -> list[str]:
    return (sorted(glob.glob(os.path.join(DATA, "apogee_dr13", "apStar", "*.fits")))
            + sorted(glob.glob(os.path.join(DATA, "apogee_dr17", "apStar-*.fits"))))


def boss_files(work: str) -> list[str]:
    folder = os.path.join(work, "boss")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k, spec in enumerate(fx.BOSS_SPECS):
        paths.append(os.path.join(folder, spec[0]))
        fx.write_boss_spec(paths[-1], k)
    return paths


def boss_grid() -> torch.Tensor:
    """BOSSNETPipeline's grid (its MIN_WL, MAX_WL, FLUX_LEN), made as it makes it."""
    return torch.linspace(3800, 8900, steps=3900)


def n_native(arch: str, path: str) -> int:
    with fits.open(path) as hdul:
        return (np.atleast_2d(hdul[1].data).shape[-1] if arch == "anet3"
                else len(hdul[1].data["flux"]))


def calibration_inputs(bn: dict, arch: str, paths: list[str]) -> torch.Tensor:
    """The golden inputs through the hutchresearch preprocessing, (B, 1, L), for the BatchNorm
    statistics and the output scaling of the stand-in weights."""
    pl = bn["pipeline"]
    if arch == "anet3":
        rows = []
        for path in paths:
            with fits.open(path) as hdul:
                rows.append(np.nan_to_num(np.atleast_2d(hdul[1].data)[0].astype(np.float32)))
        x = pl.log_scale_flux_batch(torch.from_numpy(np.stack(rows)))
    else:
        from dataset import boss_collate, open_boss_fits  # theirs, on sys.path

        _, flux, _, wave = boss_collate([(p, *open_boss_fits(p)) for p in paths])
        x = pl.log_scale_flux_batch(pl.interpolate_flux(flux, wave, boss_grid()))
    return x.float()[:, None, :]


# ---------------------------------------------------------------------------------------------
# Weights


def their_model(bn: dict, arch: str):
    import yaml

    with open(os.path.join(bn["root"], ARCHS[arch], "model_args.yaml")) as f:
        args = yaml.safe_load(f)
    with torch.random.fork_rng(devices=[]):
        return bn["BossNet"](**args), args


def _as_torch(state: dict) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def make_weights(bn: dict, arch: str, x: torch.Tensor) -> tuple[dict, dict]:
    """(state_dict of numpy arrays, recipe) of the stand-in weights (module docstring)."""
    model, _ = their_model(bn, arch)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    base = fx.seeded_state(shapes, WEIGHT_SEED[arch])
    model.load_state_dict(_as_torch(base), strict=True)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one batch gives its own statistics
    model.train()
    with torch.no_grad():
        model(x)
    for m in norms:
        m.momentum = 0.1
    model.eval()
    running = {k: v.numpy().ravel().tolist() for k, v in model.state_dict().items()
               if k.endswith(("running_mean", "running_var"))}
    with torch.no_grad():
        z = model(x).numpy().astype(np.float64)
    scale = (0.5 / z.std(axis=0)).astype(np.float32)
    shift = (-(z * scale).mean(axis=0)).astype(np.float32)
    recipe = {"seed": WEIGHT_SEED[arch], "running": running,
              "last_scale": scale.tolist(), "last_shift": shift.tolist()}
    state = fx.apply_recipe(base, recipe)
    state.update({k: v for k, v in base.items() if k.endswith("num_batches_tracked")})
    return state, recipe


def save_weights(bn: dict, state: dict, folder: str) -> tuple[str, str]:
    """model.pt (torch.save of the state_dict) and chunks/ (their save_chopped_file, 10 chunks)."""
    chunks = os.path.join(folder, "chunks")
    os.makedirs(chunks, exist_ok=True)
    single = os.path.join(folder, "model.pt")
    torch.save(_as_torch(state), single)
    bn["chop"].save_chopped_file(single, chunks, 10)
    return single, chunks


def check_their_loading(bn: dict, arch: str, chunks: str, state: dict):
    """Their franken_load of the chunk folder, loaded strictly into their class."""
    loaded = bn["pipeline"].franken_load(chunks, 10)
    model, _ = their_model(bn, arch)
    model.load_state_dict(loaded, strict=True)
    for key, value in state.items():
        assert np.array_equal(loaded[key].numpy(), value), key
    return model.eval()


# ---------------------------------------------------------------------------------------------
# hutchresearch/BOSSNet: pipeline.py


def _read_csv(path: str, mc: int) -> dict:
    out = {}
    with open(path) as f:
        rows = list(csv.reader(f))
    n = (len(rows[0]) - 1) // (3 if mc else 1)
    for row in rows[1:]:
        values = [float(v) for v in row[1:]]
        out[row[0]] = {"plain": values[:n]}
        if mc:
            out[row[0]].update(mc_median=values[n:2 * n], mc_std=values[2 * n:])
    return out


def _pipeline(bn: dict, arch: str, paths: list[str], chunks: str, out_csv: str, mc: int):
    pl, utils = bn["pipeline"], bn["utils"]
    listing = out_csv + ".txt"
    with open(listing, "w") as f:
        f.write("\n".join(paths) + "\n")
    if os.path.exists(out_csv):
        os.remove(out_csv)  # their pipeline appends
    stats = utils.Stats(**utils.open_yaml(os.path.join(bn["root"], "stats", STATS[arch])))
    original = pl.franken_load
    pl.franken_load = lambda _path, n: original(chunks, n)  # our weights, their loader
    try:
        if arch == "anet3":
            return pl.ApogeeNetPipeline(spectra_paths=listing, stats=stats, output_file=out_csv,
                                        num_uncertainty_draws=mc)
        return pl.BOSSNETPipeline(spectra_paths=listing, data_source="boss", stats=stats,
                                  output_file=out_csv, num_uncertainty_draws=mc)
    finally:
        pl.franken_load = original


def _batch_draws(draws: list[np.ndarray], mc: int, width: int) -> list[np.ndarray]:
    """Draw d of every star of a batch, (B, width): what randn_like(flux_batch) returns."""
    out = []
    for d in range(mc):
        batch = np.zeros((len(draws), width), np.float32)
        for i, eps in enumerate(draws):
            batch[i, :eps.shape[1]] = eps[d]
        out.append(batch)
    return out


def run_hutchresearch(bn, arch, paths, draws, chunks, work, mc) -> list[dict]:
    """Their predict() on every file their reader opens (one batch), plain and Monte Carlo;
    a file their reader cannot open gets its error and, for a 1-D apStar file, the values of
    their _make_prediction / _make_uncertainty_prediction on row 0 read with atleast_2d."""
    from dataset import get_fits_function

    reader = get_fits_function("apogee" if arch == "anet3" else "boss")
    results, readable = [{} for _ in paths], []
    for i, path in enumerate(paths):
        try:
            reader(path)
            readable.append(i)
        except Exception as exc:  # their reader's own failure, recorded as such
            results[i]["reader_error"] = f"{type(exc).__name__}: {exc}"
    out_csv = os.path.join(work, f"{arch}_hutchresearch.csv")
    batch_paths = [paths[i] for i in readable]
    for n_draws in (0, mc):
        pipe = _pipeline(bn, arch, batch_paths, chunks, out_csv, n_draws)
        width = max(draws[i].shape[1] for i in readable)
        with fixed_noise("randn_like", _batch_draws([draws[i] for i in readable], n_draws, width)):
            pipe.predict(batch_size=len(batch_paths), num_workers=0)
        table = _read_csv(out_csv, n_draws)
        for i in readable:
            results[i].update(table[paths[i]])
    for i in set(range(len(paths))) - set(readable):
        if arch == "anet3":
            results[i].update(_one_by_hand(pipe, paths[i], draws[i], mc))
    return results


def _one_by_hand(pipe, path: str, eps: np.ndarray, mc: int) -> dict:
    with fits.open(path) as hdul:
        rows = [np.atleast_2d(hdul[h].data.astype(np.float32))[0] for h in (1, 2)]
    flux, err = (torch.nan_to_num(torch.from_numpy(r.copy()), nan=0.0, posinf=0.0, neginf=0.0)
                 for r in rows)
    wave = torch.zeros_like(flux)[None]
    plain = pipe._make_prediction(flux[None], wave)[0].tolist()
    with fixed_noise("randn_like", [eps[d][None] for d in range(mc)]):
        med, std = pipe._make_uncertainty_prediction(flux[None], err[None], wave)
    return {"plain": plain, "mc_median": med[0].tolist(), "mc_std": std[0].tolist(),
            "reader": "row 0 read with atleast_2d, then their _make_prediction"}


# ---------------------------------------------------------------------------------------------
# sdss/astra: pipelines/apogeenet, pipelines/bossnet


def astra_model(astra: dict, arch: str, state: dict):
    cls = astra["anet3"].BossNet if arch == "anet3" else astra["bossnet"].BossNetModel
    with torch.random.fork_rng(devices=[]):
        model = cls()
    model.load_state_dict(_as_torch(state), strict=True)  # astra: strict=False
    return model.eval()


def _astra_inputs(astra: dict, arch: str, path: str):
    """(flux, e_flux, wavelength) as astra's task body builds them from its spectrum model."""
    with fits.open(path) as image:
        if arch == "anet3":  # ApogeeCoaddedSpectrumInApStar: flux (ext 1), ivar (ext 2)
            mod = astra["apogee"]
            flux = mod._transform_coadded_spectrum(np.copy(image[1].data), image, None)
            ivar = mod._transform_err_to_ivar(
                mod._transform_coadded_spectrum(np.copy(image[2].data), image, None))
            wave = None
        else:  # BossVisitSpectrum: HDU 1 columns; wavelength = 10**loglam
            data = image[1].data
            flux, ivar = np.copy(data["flux"]), np.copy(data["ivar"])
            wave = 10 ** np.copy(data["loglam"])
    run = astra[arch]
    flux = np.nan_to_num(flux, nan=0.0).astype(np.float32)
    if arch == "anet3":
        e_flux = run.reverse_inverse_error(ivar, 0.1 * np.median(flux)).astype(np.float32)
        return torch.from_numpy(flux).float(), torch.from_numpy(e_flux).float(), None
    e_flux = run.reverse_inverse_error(ivar.astype(np.float32), np.median(flux) * 0.1)
    return (torch.from_numpy(flux).float(), torch.from_numpy(e_flux.astype(np.float32)).float(),
            torch.from_numpy(wave.astype(np.float32)).float())


def run_astra(astra: dict, arch: str, paths: list[str], draws: list, state: dict, mc: int):
    model, run, out = astra_model(astra, arch, state), astra[arch], []
    for path, eps in zip(paths, draws):
        flux, e_flux, wave = _astra_inputs(astra, arch, path)
        medians: list = []
        with fixed_noise("randn", [eps]), captured_median(medians):
            values = run.make_prediction(flux, e_flux, wave, mc, model, torch.device("cpu"))
        n = len(values) // 2
        out.append({"plain": list(values[:n]), "mc_std": list(values[n:]),
                    "mc_median": torch.median(medians[0], axis=0)[0].tolist(),
                    "catalog": astra_catalog(arch, values)})
    return out


def astra_catalog(arch: str, values) -> dict:
    """What astra's task yields (teff = 10**log Teff, e_teff = teff * std(log Teff) * ln 10),
    then its models' noise model (ApogeeNet only) and result flags."""
    n = len(values) // 2
    log_g, log_teff, fe_h = values[:3]
    s_logg, s_log_teff, s_fe_h = values[n:n + 3]
    teff = 10 ** log_teff
    row = {"teff": teff, "e_teff": 10 ** log_teff * s_log_teff * np.log(10), "logg": log_g,
           "e_logg": s_logg, "fe_h": fe_h, "e_fe_h": s_fe_h}
    if arch == "bossnet":
        row.update(v_rad=values[3], e_v_rad=values[n + 3])
    else:  # models/apogeenet.py apply_noise_model
        row.update(raw_e_teff=row["e_teff"], raw_e_logg=s_logg, raw_e_fe_h=s_fe_h)
        row.update(e_teff=1.25 * row["raw_e_teff"] + 10, e_logg=1.25 * s_logg + 1e-2,
                   e_fe_h=s_fe_h + 1e-2)
    flags = 0
    if teff < 1700 or teff > 100_000:
        flags |= 2 ** 1
    if log_g < -1 or log_g > 10:
        flags |= 2 ** 2
    if teff < 3200 or log_g > 5 or fe_h < -4 or fe_h > 2:
        flags |= 2 ** 3
    if arch == "bossnet" and teff < 3900 and 3 < log_g < 6:
        flags |= 2 ** 4
    row["result_flags"] = flags
    return {k: float(v) if k != "result_flags" else v for k, v in row.items()}


# ---------------------------------------------------------------------------------------------
# The golden file


def _git_head(path: str) -> str:
    out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def bad_pixel_summary(paths, draws, astra_inputs) -> dict:
    """The share of zero-flux pixels that a draw lifts above the 1e-6 floor (astra's noise)."""
    shares = []
    for path, eps, (flux, e_flux, _) in zip(paths, draws, astra_inputs):
        bad = flux.numpy() == 0
        noisy = flux.numpy()[None] + e_flux.numpy()[None] * eps
        shares.append(float((noisy[:, bad] > 1e-6).mean()))
    return {"zero_flux_pixels_lifted_per_draw_median": float(np.median(shares))}


def mc_shift_summary(results: list, convention: str) -> dict:
    """Median over stars of |Teff(MC median) - Teff(plain)| in K (10**log Teff)."""
    shift = [abs(10 ** r[convention]["mc_median"][1] - 10 ** r[convention]["plain"][1])
             for r in results]
    return {f"{convention}_teff_mc_median_minus_plain_K_median": float(np.median(shift))}


def golden(arch, bn, astra, paths, args) -> dict:
    folder = os.path.join(args.work, arch)
    x = calibration_inputs(bn, arch, paths)
    state, recipe = make_weights(bn, arch, x)
    single, chunks = save_weights(bn, state, folder)
    check_their_loading(bn, arch, chunks, state)
    draws = [fx.fixed_draws(k, n_native(arch, p), args.mc, args.seed) for k, p in enumerate(paths)]
    hutch = run_hutchresearch(bn, arch, paths, draws, chunks, folder, args.mc)
    ast_ = run_astra(astra, arch, paths, draws, state, args.mc)
    spectra = []
    for k, path in enumerate(paths):
        spectra.append({"row": k, "file": os.path.relpath(path, DATA) if path.startswith(DATA)
                        else os.path.basename(path), "n_pixels": draws[k].shape[1],
                        "draw_check": [float(v) for v in draws[k][0, :3]] + [
                            float(draws[k].astype(np.float64).sum())],
                        "hutchresearch": hutch[k], "astra": ast_[k]})
    summary = {**mc_shift_summary(spectra, "hutchresearch"), **mc_shift_summary(spectra, "astra")}
    if arch == "anet3":
        inputs = [_astra_inputs(astra, arch, p) for p in paths]
        summary.update(bad_pixel_summary(paths, draws, inputs))
    return {
        "arch": arch, "made_by": "bench/golden_bossnet.py", "torch": torch.__version__,
        "sources": {"hutchresearch/BOSSNet": args.bossnet_commit, "sdss/astra": args.astra_commit},
        "order": ["logg", "log_teff", "fe_h"] + (["rv"] if arch == "bossnet" else []),
        "weights": {**recipe, "fingerprint": fx.state_fingerprint(state),
                    "how": "tests/bossnet_fixtures.py: apply_recipe(seeded_state(shapes, seed), "
                           "this)"},
        "draws": {"mc": args.mc, "seed": args.seed,
                  "how": "tests/bossnet_fixtures.py fixed_draws(row, n_pixels, mc, seed)"},
        "summary": summary, "spectra": spectra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bossnet", required=True, help="hutchresearch/BOSSNet checkout")
    parser.add_argument("--astra", required=True, help="sdss/astra checkout")
    parser.add_argument("--work", required=True, help="scratch folder (weights, BOSS files)")
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"))
    parser.add_argument("--mc", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2028)
    parser.add_argument("--bossnet-commit", default=None)
    parser.add_argument("--astra-commit", default=None)
    parser.add_argument("--arch", choices=tuple(ARCHS), nargs="*", default=list(ARCHS))
    args = parser.parse_args()
    args.bossnet_commit = args.bossnet_commit or _git_head(args.bossnet)
    args.astra_commit = args.astra_commit or _git_head(args.astra)
    bn, astra = load_bossnet(args.bossnet), load_astra(args.astra)
    os.makedirs(args.out, exist_ok=True)
    for arch in args.arch:
        paths = apogee_files() if arch == "anet3" else boss_files(args.work)
        record = golden(arch, bn, astra, paths, args)
        out = os.path.join(args.out, f"{arch}_golden.json")
        with open(out, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
