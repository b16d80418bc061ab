"""APOGEE Net III and BOSS Net as a PyTorch module, with both of their pipelines around it
(SDSS astra's and the hutchresearch/BOSSNet repository's).

Test reference: written from the facts of the authors' code (the architecture, the state_dict
layout, the constants, the readers and the Monte Carlo, as /work/notes/anet3_facts.md lists
them), not copied from it. Its modules carry the authors' parameter names, so
``BossNetReference(n).load_state_dict(state, strict=True)`` takes their files.

* ``BossNetReference(n_outputs)``: log-scaled flux (B, L) -> (B, n) standardised outputs.
* ``physical(z, arch)``: z * std + mean per column, in float32, the network's own order.
* Inputs: ``apstar_rows`` (flux and err rows as each convention reads them), ``errors_from_ivar``
  (astra's err rule), ``boss_inputs`` and ``resample`` (the 3,900-point grid).
* ``log_clip(flux, group)``: ln(max(flux, 1e-6)) clipped at the 95th percentile + 1 of each
  group of rows. ``plain`` / ``monte_carlo``: a pass, or the Monte Carlo on given draws.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

CHANNELS = (4, 8, 16, 32, 64)
KERNEL = 30
POOL = 1024
STATS = {"anet3": ((3.2, 3.7, -0.2), (1.2, 0.1, 0.3)),
         "bossnet": ((3.9, 3.8, -0.4, -7.4), (0.9, 0.1, 0.5, 60.9))}
GRID = (3800, 8900, 3900)


class _First(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_layer = nn.Conv1d(2, CHANNELS[0], KERNEL, padding=KERNEL // 2)
        self.bn = nn.BatchNorm1d(CHANNELS[0])

    def forward(self, x):
        return F.max_pool1d(F.elu(self.bn(self.conv_layer(x))), 2)


class _Residual(nn.Module):
    """conv (pad 15) BN ELU conv (pad 14) BN, plus the input with zero channels around it."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.conv1 = nn.Conv1d(c_in, c_out, KERNEL, padding=KERNEL // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, KERNEL, padding=KERNEL // 2 - 1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)

    def forward(self, x):
        y = self.bn2(self.conv2(F.elu(self.bn1(self.conv1(x)))))
        extra = self.c_out - self.c_in
        return F.elu(y + F.pad(x, (0, 0, extra // 2, extra - extra // 2)))


class _Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.linear_layer = nn.Linear(n_in, n_out)

    def forward(self, x):
        return F.relu(self.linear_layer(x))


class _Position(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("inv_freq", torch.ones(1))

    def forward(self, x):
        i = torch.arange(x.shape[-1], dtype=torch.float32)
        return torch.sin(i * self.inv_freq[0]).expand_as(x)


class BossNetReference(nn.Module):
    """(B, L) log-scaled flux -> (B, n_outputs) standardised outputs."""

    def __init__(self, n_outputs: int, pool: int = POOL, linear: int = 1024):
        super().__init__()
        self.pos_enc = _Position()
        self.first_conv = _First()
        self.res_blocks = nn.ModuleList(_Residual(a, b) for a, b in zip(CHANNELS, CHANNELS[1:]))
        self.pool = pool
        dense = [_Dense(CHANNELS[-1] * pool, linear)] + [_Dense(linear, linear) for _ in range(5)]
        self.linear_sequential = nn.Sequential(*dense, nn.Linear(linear, n_outputs))

    def forward(self, x):
        x = torch.stack([x, self.pos_enc(x)], dim=1)
        x = self.first_conv(x)
        for block in self.res_blocks:
            x = block(x)
        x = F.adaptive_avg_pool1d(x, self.pool)
        return self.linear_sequential(x.flatten(1))  # (B, C, P) -> c * P + i


def load(state: dict, arch: str, **sizes) -> BossNetReference:
    """A reference network holding ``state`` (numpy arrays or tensors), loaded strictly."""
    with torch.random.fork_rng(devices=[]):
        net = BossNetReference(3 if arch == "anet3" else 4, **sizes)
    net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()},
                        strict=True)
    return net.eval()


def physical(z: np.ndarray, arch: str) -> np.ndarray:
    """Standardised (B, n) -> physical in the network's order (log g, log10 Teff, [Fe/H][, RV]),
    float32 like the authors' in-place de-standardisation."""
    mean, std = STATS[arch]
    z = np.asarray(z, np.float32)
    return np.stack([z[:, j] * np.float32(std[j]) + np.float32(mean[j])
                     for j in range(z.shape[1])], axis=1)


def log_clip(flux: torch.Tensor, group: int = 1) -> torch.Tensor:
    """(B, L) -> (B, L): ln(max(flux, 1e-6)), clipped at torch.quantile(., 0.95) + 1 of every
    ``group`` consecutive rows taken together."""
    x = torch.log(torch.clamp(flux, min=1e-6))
    rows = x.reshape(-1, group * x.shape[-1])
    q = torch.quantile(rows, 0.95, dim=-1, keepdim=True)
    return torch.minimum(rows, q + 1).reshape(x.shape)


def plain(net: BossNetReference, flux: np.ndarray, arch: str) -> np.ndarray:
    """One pass over (B, L) flux (NaN already handled): physical values, the network's order."""
    with torch.no_grad():
        return physical(net(log_clip(torch.as_tensor(flux, dtype=torch.float32))).numpy(), arch)


# ------------------------------------------------------------------------------------------
# Inputs


def errors_from_ivar(ivar: np.ndarray, default: float) -> np.ndarray:
    """err = ivar**-0.5 with NaN/inf ivar -> 0 first; every err infinite -> ``default``; err
    above 5 x the median of the finite ones, and NaN (ivar < 0), -> 5 x that median."""
    with np.errstate(all="ignore"):
        ivar = np.nan_to_num(ivar)
        err = (1 / ivar) ** 0.5
        if np.isinf(err).all():
            err = np.full(err.shape, default, ivar.dtype)
        cap = 5 * np.median(err[np.isfinite(err)])
        return np.where(np.isnan(err) | (err > cap), cap, err)


def apstar_rows(path, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """(flux, err) float32 rows of an apStar file under ``convention``: row 0 (a 1-D file's only
    row); astra: NaN flux -> 0, err through ivar = err**-2 and ``errors_from_ivar``;
    hutchresearch: NaN and inf -> 0 in both, err as is."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        flux, err = (np.atleast_2d(np.array(hdul[h].data))[0] for h in (1, 2))
    if convention == "hutchresearch":
        return tuple(np.nan_to_num(np.asarray(v, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
                     for v in (flux, err))
    flux = np.nan_to_num(flux, nan=0.0).astype(np.float32)
    with np.errstate(all="ignore"):
        ivar = err ** -2.0
    ivar[~np.isfinite(ivar)] = 0
    return flux, errors_from_ivar(ivar, 0.1 * np.median(flux)).astype(np.float32)


def boss_inputs(path, convention: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flux, err, wavelength) float32 on the native pixels of a spec file: HDU 1 columns;
    astra sets NaN flux to 0, the repository keeps it (``resample`` drops it)."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        data = hdul[1].data
        flux = np.asarray(data["flux"], np.float32)
        ivar = np.asarray(data["ivar"], np.float32)
        wave = (np.float32(10.0) ** np.asarray(data["loglam"], np.float32)).astype(np.float32)
    if convention == "astra":
        flux = np.nan_to_num(flux, nan=0.0)
    err = errors_from_ivar(ivar, float(np.median(flux)) * 0.1).astype(np.float32)
    return flux, err, wave


def resample(flux: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """(..., n) native flux -> (..., 3900) on the grid: NaN pixels dropped, linear
    interpolation in float64 (end values beyond the ends), float32."""
    grid = torch.linspace(*GRID).numpy().astype(np.float64)
    rows = np.atleast_2d(flux)
    out = [np.interp(grid, wave[np.isfinite(r)].astype(np.float64),
                     r[np.isfinite(r)].astype(np.float64)) for r in rows]
    return np.asarray(out, np.float32).reshape(*np.shape(flux)[:-1], len(grid))


# ------------------------------------------------------------------------------------------
# Monte Carlo


def monte_carlo(net, flux, err, eps, arch: str, convention: str, wave=None) -> dict:
    """The authors' Monte Carlo of one star on the draws ``eps`` (R, n native): noisy = flux +
    err * eps (NaN-flux pixels stay NaN), each draw resampled (BOSS), log-scaled per draw
    (hutchresearch) or over the whole stack (astra), through the network. Returns the lower
    median and the ddof-1 std of the physical draws (log10 Teff), network order."""
    noisy = flux[None, :] + err[None, :] * np.asarray(eps, np.float32)
    if wave is not None:
        noisy = resample(noisy, wave)
    group = len(eps) if convention == "astra" else 1
    with torch.no_grad():
        x = log_clip(torch.as_tensor(noisy, dtype=torch.float32), group)
        draws = torch.as_tensor(physical(net(x).numpy(), arch))
    return {"median": torch.median(draws, dim=0)[0].numpy(),
            "std": torch.std(draws, dim=0).numpy()}
