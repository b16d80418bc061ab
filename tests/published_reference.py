"""APOGEE Net I and II as PyTorch modules, with the authors' pre/post-processing conventions.

Test reference: written from facts extracted from the authors' code (astra's Net I, the
hutchresearch Net II pipeline), not copied from it. The
parameter names and shapes match the authors' state_dicts (conv1..conv12, fc1..fc3 and, for
Net II, metadata.l1..metadata.l5), so ``module.load_state_dict(torch.load(path))`` works on
their weight files.

Public functions return the package's target order (teff [K], logg [dex], fe_h [dex]):

* ``net1_predict(flux, model)``: one deterministic Net I pass on raw apStar flux.
* ``net1_predict_mc(flux, error, model)``: the astra Net I Monte Carlo (mean and std of 100
  draws, draw 0 unperturbed).
* ``net2_predict(flux, photometry7, model)``: one deterministic Net II pass.
* ``net2_predict_mc(flux, error, photometry7, model)``: the hutchresearch pipeline's Monte
  Carlo (torch median and ddof-1 std of the draws, in log10 Teff, plus Teff-in-K statistics).

Both Monte Carlo functions take ``draws``, (n, n_draws, 8575) standard normals, in place of their
own torch.randn: fed the draws another implementation made, they must give its numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

N_PIXELS = 8575
#: Channels of conv1..conv12; kernel 3, padding 1, a max-pool of 2 after every second conv.
CONV_CHANNELS = (8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64)
#: Length after six floor-halvings of 8575: 4287, 2143, 1071, 535, 267, 133.
FLAT_LENGTH = 133
FLAT_FEATURES = CONV_CHANNELS[-1] * FLAT_LENGTH  # 8512, channel-major (c * 133 + l)
METADATA_SIZES = (7, 8, 16, 32, 32, 64)
BAD_ERROR = 1e10

# Net I (astra 2020): outputs (logg, teff, fe_h), physical = out * sigma + mean.
NET1_MEAN = np.array([2.880541250669337, 4716.915128138449, -0.22329606176144642])
NET1_SIGMA = np.array([1.1648147820369943, 733.0099523547299, 0.3004270650813916])

# Net II (hutchresearch/ApogeeNet2): outputs (logg, log10 teff, fe_h).
NET2_MEAN = (2.925783395767212, 3.6705732345581055, -0.13088105618953705)
NET2_STD = (1.1890668869018555, 0.0917675793170929, 0.25668784976005554)

# Net II photometry, in the order parallax, G, BP, RP, J, H, K.
PHOT_COLUMNS = ("GAIAEDR3_PARALLAX", "GAIAEDR3_PHOT_G_MEAN_MAG", "GAIAEDR3_PHOT_BP_MEAN_MAG",
                "GAIAEDR3_PHOT_RP_MEAN_MAG", "J", "H", "K")
PHOT_FILL = np.array([-84.82700, 21.40844, 24.53892, 20.26276, 18.43900, 24.00000, 17.02500])
PHOT_MEAN = np.array([-0.6959113178296891, 13.630030428758845, 14.5224418320574,
                      12.832448427460813, 11.537019017423619, 10.858717523536697,
                      10.702106344460235])
PHOT_STD = np.array([14.572430555504504, 2.2762944923233883, 2.8342029214199704,
                     2.136884367623457, 1.6793628207779732, 1.4888102872755238,
                     1.5848713221149886])


class MetadataNet(nn.Module):
    """Net II photometry branch: 7 -> 8 -> 16 -> 32 -> 32 -> 64, ReLU after every layer."""

    def __init__(self):
        super().__init__()
        for i, (n_in, n_out) in enumerate(zip(METADATA_SIZES[:-1], METADATA_SIZES[1:]), start=1):
            self.add_module(f"l{i}", nn.Linear(n_in, n_out))

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        for i in range(1, len(METADATA_SIZES)):
            m = F.relu(getattr(self, f"l{i}")(m))
        return m


class _Trunk(nn.Module):
    """The shared VGG-like flux trunk and dense head; subclasses add the photometry branch."""

    def __init__(self, fc1_inputs: int, drop_p: float = 0.0, metadata: bool = False):
        super().__init__()
        c_in = 1
        for i, c_out in enumerate(CONV_CHANNELS, start=1):
            self.add_module(f"conv{i}", nn.Conv1d(c_in, c_out, kernel_size=3, padding=1))
            c_in = c_out
        if metadata:  # registered here so state_dict keys come in the authors' order
            self.metadata = MetadataNet()
        self.fc1 = nn.Linear(fc1_inputs, 512)
        self.fc1_dropout = nn.Dropout(p=drop_p)  # used after fc1 and fc2, before the ReLU
        self.fc2 = nn.Linear(512, 512)
        self.fc3 = nn.Linear(512, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8575) flux -> (B, 8512) features, flattened channel-major."""
        for i in range(1, len(CONV_CHANNELS) + 1, 2):
            first, second = getattr(self, f"conv{i}"), getattr(self, f"conv{i + 1}")
            x = F.max_pool1d(F.relu(second(F.relu(first(x)))), 2)
        return x.reshape(x.shape[0], -1)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.fc1_dropout(self.fc1(z)))
        z = F.relu(self.fc1_dropout(self.fc2(z)))
        return self.fc3(z)


class ApogeeNetI(_Trunk):
    """Net I: (B, 1, 8575) raw flux -> (B, 3) standardised (logg, teff, fe_h)."""

    def __init__(self, drop_p: float = 0.0):
        super().__init__(FLAT_FEATURES, drop_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ApogeeNetII(_Trunk):
    """Net II: flux (B, 1, 8575) and z-scored photometry (B, 7) -> (B, 3) standardised
    (logg, log10 teff, fe_h). fc1 sees [8512 trunk features, then 64 photometry features]."""

    def __init__(self, drop_p: float = 0.0):
        super().__init__(FLAT_FEATURES + METADATA_SIZES[-1], drop_p, metadata=True)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat((self.features(x), self.metadata(m)), dim=1))


# --------------------------------------------------------------------------------------------
# Loading


def _as_model(model, cls, strict: bool):
    """An eval-mode ``cls`` from a module (ours or any with the same keys), a state_dict or a
    path to a saved state_dict."""
    if model is None:
        raise ValueError(f"{cls.__name__}: pass a model, a state_dict or the path of a .pt file")
    if isinstance(model, cls):
        return model.eval()
    if isinstance(model, nn.Module):  # e.g. the authors' own class: take its parameters
        model = model.state_dict()
    state = torch.load(model, map_location="cpu") if isinstance(model, str) else model
    with torch.random.fork_rng(devices=[]):  # building it must not move the global RNG
        net = cls()
    net.load_state_dict(state, strict=strict)
    return net.eval()


def load_net1(model, strict: bool = True) -> ApogeeNetI:
    """astra loaded Net I with strict=False; strict=True here shows any key mismatch."""
    return _as_model(model, ApogeeNetI, strict)


def load_net2(model) -> ApogeeNetII:
    return _as_model(model, ApogeeNetII, True)


# --------------------------------------------------------------------------------------------
# Preprocessing


def _flux_2d(flux) -> np.ndarray:
    arr = np.array(flux, dtype=np.float32, copy=True)
    arr = arr.reshape(1, -1) if arr.ndim == 1 else arr.reshape(arr.shape[0], -1)
    if arr.shape[1] != N_PIXELS:
        raise ValueError(f"flux has {arr.shape[1]} pixels; the networks need {N_PIXELS}")
    return arr


def net1_clean(flux, error=None):
    """astra 2021 Net I cleaning: a pixel whose flux or error is not finite gets the nanmedian
    of that spectrum's flux and an error of 1e10. Returns float32 (flux, error or None)."""
    f = _flux_2d(flux)
    e = None if error is None else _flux_2d(error)
    bad = ~np.isfinite(f) if e is None else (~np.isfinite(f) | ~np.isfinite(e))
    for i in np.flatnonzero(bad.any(axis=1)):
        finite = f[i][np.isfinite(f[i])]
        f[i][bad[i]] = np.median(finite) if finite.size else np.nan
        if e is not None:
            e[i][bad[i]] = BAD_ERROR
    return f, e


def net2_clean(flux) -> np.ndarray:
    """hutchresearch Net II cleaning: np.nan_to_num (NaN -> 0, +-inf -> +-float32 max)."""
    return np.nan_to_num(_flux_2d(flux))


def normalise_photometry(photometry7, astra_negative_rule: bool = False) -> np.ndarray:
    """(n, 7) raw [parallax, G, BP, RP, J, H, K] -> (n, 7) float32 z-scores. Values >= 98 or not
    finite take the fill value. ``astra_negative_rule`` adds astra's third rule (values <= -1,
    e.g. -9999 placeholders and parallaxes <= -1 mas, also take the fill value)."""
    m = np.atleast_2d(np.asarray(photometry7, dtype=np.float64))
    if m.shape[1] != 7:
        raise ValueError(f"photometry has {m.shape[1]} columns; Net II needs 7")
    with np.errstate(invalid="ignore"):
        m = np.where(m < 98, m, PHOT_FILL)
        m = np.where(np.isfinite(m), m, PHOT_FILL)
        if astra_negative_rule:
            m = np.where(m > -1, m, PHOT_FILL)
    return ((m - PHOT_MEAN) / PHOT_STD).astype(np.float32)


def mc_sigma(flux_row: torch.Tensor, error_row: torch.Tensor) -> torch.Tensor:
    """The authors' per-pixel MC sigma for one spectrum (both nets): the median error (over all
    pixels, 1e10 ones included) is taken first; 1e10 errors become the flux value itself; then
    anything >= 5 x median becomes 5 x median."""
    cap = 5 * torch.median(error_row)
    sigma = torch.where(error_row == BAD_ERROR, flux_row, error_row)
    return torch.where(sigma < cap, sigma, cap)


def _run(net, *tensors, batch: int = 512) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in range(0, tensors[0].shape[0], batch):
            out.append(net(*(t[s:s + batch] for t in tensors)))
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------------------------
# Net I


def _net1_physical(raw: np.ndarray) -> np.ndarray:
    """(n, 3) standardised (logg, teff, fe_h) -> (n, 3) float64 (teff, logg, fe_h)."""
    phys = raw.astype(np.float64) * NET1_SIGMA + NET1_MEAN
    return phys[:, [1, 0, 2]]


def net1_predict(flux, model=None, error=None) -> np.ndarray:
    """(n, 8575) raw apStar flux (HDU 1) -> (n, 3) (teff K, logg, fe_h), one pass, no MC.
    Equals astra's draw 0; astra itself reported the mean over its 100 draws (net1_predict_mc).
    ``error`` (HDU 2): its non-finite pixels are cleaned too, as astra did."""
    net = load_net1(model)
    f, _ = net1_clean(flux, error)
    return _net1_physical(_run(net, torch.from_numpy(f)[:, None, :]))


def _normals(draws, i: int, n_draws: int, gen) -> torch.Tensor:
    """Star i's (n_draws, 1, 8575) standard normals: ``draws[i]`` if given, else torch.randn."""
    if draws is None:
        return torch.randn((n_draws, 1, N_PIXELS), generator=gen)
    eps = torch.from_numpy(np.asarray(draws[i], dtype=np.float32))
    if eps.shape != (n_draws, N_PIXELS):
        raise ValueError(f"draws[{i}] has shape {tuple(eps.shape)}, not ({n_draws}, {N_PIXELS})")
    return eps[:, None, :]


def net1_predict_mc(flux, error, model=None, n_draws: int = 100, ddof: int = 0, seed=None,
                    draws=None):
    """astra's Net I Monte Carlo, per spectrum: cleaning, mc_sigma, n_draws Gaussian draws of
    which draw 0 is the unperturbed flux. Returns (mean, std), each (n, 3) in (teff, logg, fe_h),
    over the draws. ddof=0 is astra from Dec 2020 (np.std); its first version used ddof=1.
    ``draws``: (n, n_draws, 8575) standard normals instead of torch.randn."""
    net = load_net1(model)
    f, e = net1_clean(flux, error)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    means, stds = [], []
    for i, (fi, ei) in enumerate(zip(torch.from_numpy(f), torch.from_numpy(e))):
        sigma = mc_sigma(fi, ei)
        draws_i = _normals(draws, i, n_draws, gen) * sigma + fi
        draws_i[0, 0] = fi
        phys = _net1_physical(_run(net, draws_i))
        means.append(phys.mean(axis=0))
        stds.append(phys.std(axis=0, ddof=ddof))
    return np.array(means), np.array(stds)


# --------------------------------------------------------------------------------------------
# Net II


def _net2_destandardise(raw: torch.Tensor) -> torch.Tensor:
    """(n, 3) standardised -> (n, 3) float32 (logg, log10 teff, fe_h), as the authors do it."""
    out = raw.clone()
    for i in range(3):
        out[:, i] = out[:, i] * NET2_STD[i] + NET2_MEAN[i]
    return out


def _net2_physical(logspace: np.ndarray) -> np.ndarray:
    """(n, 3) (logg, log10 teff, fe_h) -> (n, 3) float64 (teff K, logg, fe_h)."""
    logspace = logspace.astype(np.float64)
    return np.stack([10.0 ** logspace[:, 1], logspace[:, 0], logspace[:, 2]], axis=1)


def net2_predict(flux, photometry7, model=None, astra_negative_rule: bool = False) -> np.ndarray:
    """(n, 8575) raw apStar flux and (n, 7) raw [parallax, G, BP, RP, J, H, K] -> (n, 3)
    (teff K, logg, fe_h); teff = 10 ** the network's log10 Teff."""
    net = load_net2(model)
    f = torch.from_numpy(net2_clean(flux))[:, None, :]
    m = torch.from_numpy(normalise_photometry(photometry7, astra_negative_rule))
    if m.shape[0] != f.shape[0]:
        raise ValueError(f"{f.shape[0]} spectra but {m.shape[0]} photometry rows")
    raw = torch.from_numpy(_run(net, f, m))
    return _net2_physical(_net2_destandardise(raw).numpy())


def net2_predict_mc(flux, error, photometry7, model=None, n_draws: int = 100, seed=None,
                    astra_negative_rule: bool = False, draws=None) -> dict:
    """hutchresearch pipeline Monte Carlo, per spectrum: error is np.nan_to_num'ed, mc_sigma,
    n_draws Gaussian draws (none unperturbed), photometry not perturbed. Returns a dict of (n, 3)
    arrays in (teff, logg, fe_h) column order:

    * "value": the deterministic prediction (teff in K);
    * "median_log", "std_log": torch.median (lower middle for even counts) and ddof-1 std of the
      draws with Teff in log10 (column 0 is log10 Teff), as the hutch pipeline writes them;
    * "median_k", "std_k": the same statistics (torch.median, ddof-1 std) with Teff in K, 10**
      on each draw first: what the hutch pipeline would give in K (it writes log10 Teff);
    * "median", "std": np.median and np.std (ddof 0) with Teff in K, 10** on each draw first,
      as astra's later apogeenet_v2 summarised its draws (its noise differs: there a 1e10
      error takes the 5x median cap, not the flux value).

    ``draws``: (n, n_draws, 8575) standard normals instead of torch.randn."""
    net = load_net2(model)
    f = torch.from_numpy(net2_clean(flux))
    e = torch.from_numpy(np.nan_to_num(_flux_2d(error)))
    m = torch.from_numpy(normalise_photometry(photometry7, astra_negative_rule))
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out = {k: [] for k in ("median_log", "std_log", "median_k", "std_k", "median", "std")}
    for i, (fi, ei, mi) in enumerate(zip(f, e, m)):
        sigma = mc_sigma(fi, ei)
        draws_i = _normals(draws, i, n_draws, gen) * sigma + fi
        logs = _net2_destandardise(torch.from_numpy(_run(net, draws_i, mi.repeat(n_draws, 1))))
        reorder = logs[:, [1, 0, 2]]
        out["median_log"].append(torch.median(reorder, dim=0).values.numpy())
        out["std_log"].append(torch.std(reorder, dim=0).numpy())
        phys = _net2_physical(logs.numpy())
        out["median_k"].append(torch.median(torch.from_numpy(phys), dim=0).values.numpy())
        out["std_k"].append(torch.std(torch.from_numpy(phys), dim=0).numpy())
        out["median"].append(np.median(phys, axis=0))
        out["std"].append(phys.std(axis=0))
    result = {k: np.array(v) for k, v in out.items()}
    result["value"] = net2_predict(flux, photometry7, net, astra_negative_rule)
    return result


# --------------------------------------------------------------------------------------------


def expected_state_dict_shapes(net: int) -> dict:
    """The authors' state_dict key -> shape for Net 1 or Net 2."""
    shapes, c_in = {}, 1
    for i, c_out in enumerate(CONV_CHANNELS, start=1):
        shapes[f"conv{i}.weight"], shapes[f"conv{i}.bias"] = (c_out, c_in, 3), (c_out,)
        c_in = c_out
    fc1_in = FLAT_FEATURES + (METADATA_SIZES[-1] if net == 2 else 0)
    for name, (n_in, n_out) in {"fc1": (fc1_in, 512), "fc2": (512, 512), "fc3": (512, 3)}.items():
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (n_out, n_in), (n_out,)
    if net == 2:
        for i, (n_in, n_out) in enumerate(zip(METADATA_SIZES[:-1], METADATA_SIZES[1:]), start=1):
            shapes[f"metadata.l{i}.weight"], shapes[f"metadata.l{i}.bias"] = (n_out, n_in), (n_out,)
    return shapes
