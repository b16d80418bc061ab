"""The YSO sky map (paper Figures 7 and 8): the candidates on an all-sky frame in galactic
coordinates, and beside it a zoomed panel per group of candidates on the sky (friends-of-friends
with a linking length of a few degrees: star-forming regions), each coloured by age bin.

Longitudes are written 0-360 degrees everywhere (ticks and titles), increasing to the left."""

from __future__ import annotations

import astropy.units as u
import matplotlib
import matplotlib.ticker as mticker
import numpy as np
from astropy.coordinates import SkyCoord
from matplotlib.figure import Figure

from apnet_tf.evaluation.plots import save_figure
from apnet_tf.kiel import AGE_BIN_LABELS

__all__ = ["LINK_DEG", "MAX_GROUPS", "to_galactic", "sky_groups", "group_centre", "yso_sky_map"]

#: Friends-of-friends linking length (degrees): two candidates this close share a group.
LINK_DEG = 3.0
#: The most groups that get a zoomed panel (the largest ones).
MAX_GROUPS = 6
_CHUNK = 1024  # rows of the pair search at a time: (1024, N) dot products
_LON = mticker.FuncFormatter(lambda v, _: f"{v % 360:g}°")
_LAT = mticker.FuncFormatter(lambda v, _: f"{v:g}°")
_COLOURS = dict(zip(AGE_BIN_LABELS, matplotlib.colormaps["plasma"](
    np.linspace(0, 0.9, len(AGE_BIN_LABELS)))))
#: Where the overview puts the number of group k (offset from its centre, in points): one
#: direction per group up to MAX_GROUPS, so that the numbers of nearby groups stay apart.
_LABEL_OFFSETS = ((22, 22), (22, -24), (-26, 22), (-26, -24), (34, 0), (-38, 0))


def to_galactic(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(l in [0, 360), b) in degrees, each (N,), of ICRS ``ra``, ``dec`` (N,) in degrees."""
    gal = SkyCoord(ra=np.asarray(ra, float) * u.deg, dec=np.asarray(dec, float) * u.deg,
                   frame="icrs").galactic
    return gal.l.wrap_at(360 * u.deg).deg, gal.b.deg


def _unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """(N, 3) unit vectors of (N,) longitudes and latitudes in degrees."""
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(n,) label of each node's connected component (its smallest member) given the edges
    (i, j): min-label propagation with pointer jumping."""
    lab = np.arange(n)
    while True:
        new = lab.copy()
        np.minimum.at(new, i, lab[j])
        np.minimum.at(new, j, lab[i])
        new = new[new]
        if np.array_equal(new, lab):
            return lab
        lab = new


def sky_groups(lon: np.ndarray, lat: np.ndarray, link_deg: float = LINK_DEG
               ) -> list[np.ndarray]:
    """Friends-of-friends groups of points on the sky.

    Args:
        lon, lat: (N,) degrees (any longitude convention). link_deg: the linking length.

    Returns:
        One sorted index array into lon/lat per group, largest group first (ties: the group
        with the smaller first index first); every point is in exactly one group.
    """
    n = len(lon)
    if n == 0:
        return []
    vec = _unit_vectors(np.asarray(lon, float), np.asarray(lat, float))
    cos_link = np.cos(np.radians(link_deg))
    firsts, seconds = [], []
    for start in range(0, n, _CHUNK):
        i, j = np.nonzero(vec[start:start + _CHUNK] @ vec.T >= cos_link)
        i += start
        firsts.append(i[i < j])
        seconds.append(j[i < j])
    lab = _components(n, np.concatenate(firsts), np.concatenate(seconds))
    groups = [np.flatnonzero(lab == root) for root in np.unique(lab)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def group_centre(lon: np.ndarray, lat: np.ndarray) -> tuple[float, float]:
    """(l in [0, 360), b) in degrees: the direction of the mean unit vector of (N,) points."""
    x, y, z = _unit_vectors(np.asarray(lon, float), np.asarray(lat, float)).mean(axis=0)
    return (float(np.degrees(np.arctan2(y, x)) % 360),
            float(np.degrees(np.arctan2(z, np.hypot(x, y)))))


def _shown(groups: list[np.ndarray], most: int) -> list[np.ndarray]:
    """The groups that get a panel: the largest ``most`` with two or more members, or the
    single star of a map with no group larger than one."""
    shown = [g for g in groups if len(g) > 1][:most]
    return shown or groups[:1]


def _scatter_by_age(ax, x: np.ndarray, y: np.ndarray, ages: np.ndarray, size: float,
                    legend: bool) -> None:
    """Points coloured by age bin; with ``legend``, each bin labelled with its count."""
    for label, colour in _COLOURS.items():
        sel = ages == label
        ax.scatter(x[sel], y[sel], s=size, color=colour,
                   label=f"{label} ({sel.sum()})" if legend else None)


def _overview(ax, lon: np.ndarray, lat: np.ndarray, ages: np.ndarray,
              groups: list[np.ndarray]) -> None:
    """The all-sky frame (l from 180 through 0 to 180 degrees, left to right); each zoomed
    group is numbered beside its centre."""
    wrapped = (lon + 180) % 360 - 180
    if len(lon):
        _scatter_by_age(ax, wrapped, lat, ages, 8, legend=True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  title="age from log g\n(paper 4.2)", frameon=False)
    else:
        ax.text(0, 0, "no YSO candidates", ha="center", va="center", color="0.4")
    for number, idx in enumerate(groups, 1):
        l0, b0 = group_centre(lon[idx], lat[idx])
        # each number on a box of its own, off the points and away from its neighbours'
        # numbers (groups a few degrees apart, such as Orion's, get other directions), with a
        # line to its group's centre
        ax.annotate(str(number), ((l0 + 180) % 360 - 180, b0), fontsize=9, fontweight="bold",
                    xytext=_LABEL_OFFSETS[(number - 1) % len(_LABEL_OFFSETS)],
                    textcoords="offset points", ha="center", va="center", zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.4", "lw": 0.6},
                    arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.6})
    ax.set_xlim(180, -180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_xticks(np.arange(-180, 181, 60))
    ax.set_yticks(np.arange(-90, 91, 30))
    _sky_axes(ax)


def _sky_axes(ax) -> None:
    """Degree tick labels, axis names and a light grid."""
    ax.xaxis.set_major_formatter(_LON)
    ax.yaxis.set_major_formatter(_LAT)
    ax.set_xlabel("galactic longitude l")
    ax.set_ylabel("galactic latitude b")
    ax.grid(True, color="0.85", lw=0.6)


def _group_panel(ax, lon: np.ndarray, lat: np.ndarray, ages: np.ndarray, number: int) -> None:
    """One group framed around its members with a margin, equal sky degrees on both axes
    (longitudes drawn continuous around the centre, so a group across l = 0 stays whole)."""
    l0, b0 = group_centre(lon, lat)
    x = l0 + (lon - l0 + 180) % 360 - 180
    margin = max(1.0, 0.15 * max(np.ptp(x), np.ptp(lat)))
    _scatter_by_age(ax, x, lat, ages, 14, legend=False)
    ax.set_xlim(x.max() + margin, x.min() - margin)
    ax.set_ylim(lat.min() - margin, lat.max() + margin)
    ax.set_aspect(1 / max(np.cos(np.radians(b0)), 0.1), adjustable="box")
    ax.xaxis.set_major_locator(mticker.MaxNLocator(5))
    ax.yaxis.set_major_locator(mticker.MaxNLocator(6))
    _sky_axes(ax)
    ax.set_title(f"{number}: {len(lon)} star{'s' if len(lon) > 1 else ''} around "
                 f"l = {l0:.1f}°, b = {b0:+.1f}°", fontsize=10)


def _layout(panels: int):
    """(figure, overview axes, [panel axes]): the all-sky frame on top, up to three zoomed
    panels per row below it."""
    cols, rows = min(max(panels, 2), 3), -(-panels // 3)
    fig = Figure(figsize=(12, 5.2 + 3.8 * rows), layout="constrained")
    grid = fig.add_gridspec(1 + rows, cols, height_ratios=[5.2] + [3.8] * rows)
    overview = fig.add_subplot(grid[0, :])
    return fig, overview, [fig.add_subplot(grid[1 + k // 3, k % 3]) for k in range(panels)]


def yso_sky_map(ra: np.ndarray, dec: np.ndarray, age_bins, path: str, note: str = "",
                link_deg: float = LINK_DEG, most: int = MAX_GROUPS) -> str:
    """YSO candidates in galactic coordinates, coloured by age bin (paper Figures 7 and 8):
    the all-sky frame, and a zoomed panel for each of the ``most`` largest groups
    (``sky_groups`` with ``link_deg``), numbered on the frame. Writes the PNG ``path``.

    Args:
        ra, dec: (N,) ICRS degrees (non-finite ones are left out). age_bins: (N,) labels of
            ``AGE_BIN_LABELS``. note: what the figure shows (splits), for the title.
    """
    age_bins = np.asarray(age_bins).astype(str)
    ok = np.isfinite(ra) & np.isfinite(dec)
    lon, lat = to_galactic(np.asarray(ra)[ok], np.asarray(dec)[ok]) if ok.any() else (
        np.empty(0), np.empty(0))
    ages = age_bins[ok]
    groups = _shown(sky_groups(lon, lat, link_deg), most)
    fig, overview, panels = _layout(len(groups))
    _overview(overview, lon, lat, ages, groups)
    for number, (ax, idx) in enumerate(zip(panels, groups), 1):
        _group_panel(ax, lon[idx], lat[idx], ages[idx], number)
    stars = int(ok.sum())
    zoom = (f"; below: {len(groups)} largest group{'s' * (len(groups) > 1)}, friends-of-"
            f"friends within {link_deg:g}°" if groups else "")
    overview.set_title(f"YSO candidates in galactic coordinates ({stars} star"
                       f"{'s' * (stars != 1)}" + (f"; {note}" if note else "") + zoom + ")")
    return save_figure(fig, path)
