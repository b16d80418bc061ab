"""Columns of the first binary-table HDUs of an uncompressed FITS file, without astropy's table
machinery.

Opening a BOSS spec file with ``astropy.io.fits`` builds a column object for each of the 150 to
240 columns of its SPALL HDU, and costs several times more than reading the spectrum. This
reader walks the headers' 2880-byte blocks (``fastfits``), keeps the cards it needs (TTYPEn,
TFORMn and the structure), and reads the asked-for columns of the first rows straight from the
bytes, as a numpy structured view. Scalar numeric columns (B, I, J, K, E, D) and text (nA) are
read; anything else it is asked for, a scaled column (TSCAL/TZERO), a compressed or truncated
file, or an HDU that is not a binary table, raises ``fastfits.Unsupported``, and the caller
falls back to astropy, which also words the errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from apnet_tf.io.fastfits import Unsupported, data_size, scan_header

__all__ = ["read_tables"]

_WIDTH = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16,
          "P": 8, "Q": 16}
_DTYPE = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
_TFORM = re.compile(r"\s*(\d*)([LXBIJKAEDCMPQ])")
_STRUCTURE = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT",
              "TFIELDS")
_COLUMN_KEYS = re.compile(r"(TTYPE|TFORM|TSCAL|TZERO)(\d+)")


def _header(f, keys: tuple[str, ...]) -> tuple[dict, int] | None:
    """The values of ``keys``, the structure and the column cards of one header, and its size
    in bytes; None at the end of the file (a truncated header: ``fastfits.Truncated``, which
    is Unsupported, so astropy says so)."""
    return scan_header(f, lambda key: key in keys or key in _STRUCTURE or bool(
        _COLUMN_KEYS.fullmatch(key)))


def _layout(h: dict, wanted: set[str]) -> tuple[dict[str, int], dict[str, str]]:
    """{lower-case name: byte offset} and {name: numpy dtype} of the wanted columns."""
    offsets, dtypes, offset = {}, {}, 0
    for k in range(1, int(h.get("TFIELDS", 0)) + 1):
        match = _TFORM.match(str(h.get(f"TFORM{k}", "")))
        if match is None:
            raise Unsupported
        repeat, code = int(match.group(1) or 1), match.group(2)
        width = (repeat + 7) // 8 if code == "X" else repeat * _WIDTH[code]
        name = str(h.get(f"TTYPE{k}", "")).strip().lower()
        if name in wanted and name not in offsets:
            if f"TSCAL{k}" in h or f"TZERO{k}" in h:
                raise Unsupported
            if code == "A":
                dtypes[name] = f"S{repeat}"
            elif code in _DTYPE and repeat == 1:
                dtypes[name] = _DTYPE[code]
            else:
                raise Unsupported
            offsets[name] = offset
        offset += width
    if offset != int(h["NAXIS1"]):
        raise Unsupported
    return offsets, dtypes


def read_tables(path: str, primary_keys: tuple[str, ...],
                columns: Mapping[int, tuple[str, ...]], rows: Mapping[int, int | None],
                ) -> tuple[dict, dict[int, dict[str, np.ndarray]]]:
    """Values of ``primary_keys`` (primary header), and for each HDU k of ``columns`` (1, 2,
    ...) its columns of those names (any case; the result's keys are lower-case; an absent
    column is left out) over its first ``rows[k]`` rows (None: all), native byte order. An HDU
    past the end of the file is left out.

    Raises:
        fastfits.Unsupported: not a plain, complete FITS file whose asked-for HDUs are binary
            tables of scalar or text columns; use astropy instead.
        OSError: the file cannot be opened.
    """
    out: dict[int, dict[str, np.ndarray]] = {}
    with open(path, "rb") as f:
        if f.read(6) != b"SIMPLE":
            raise Unsupported
        f.seek(0)
        file_size, pos, primary = os.fstat(f.fileno()).st_size, 0, {}
        for k in range(max(columns) + 1):
            f.seek(pos)
            found = _header(f, primary_keys if k == 0 else ())
            if found is None:
                break
            h, hsize = found
            if pos + hsize + data_size(h, padded=False) > file_size:
                raise Unsupported  # truncated: astropy says so
            if k == 0:
                primary = {key: h.get(key) for key in primary_keys}
            elif k in columns:
                out[k] = _columns(f, h, pos + hsize, columns[k], rows.get(k))
            pos += hsize + data_size(h)
        if 1 in columns and 1 not in out:
            raise Unsupported  # no HDU 1: astropy words it
    return primary, out


def _columns(f, h: dict, start: int, names: tuple[str, ...], limit: int | None,
             ) -> dict[str, np.ndarray]:
    if h.get("XTENSION") != "BINTABLE" or int(h.get("NAXIS", 0)) != 2:
        raise Unsupported
    offsets, dtypes = _layout(h, {n.lower() for n in names})
    n_rows = int(h["NAXIS2"]) if limit is None else min(limit, int(h["NAXIS2"]))
    width = int(h["NAXIS1"])
    f.seek(start)
    data = f.read(n_rows * width)
    if len(data) < n_rows * width:
        raise Unsupported
    view = np.frombuffer(data, dtype=np.dtype({"names": list(offsets), "offsets": list(
        offsets.values()), "formats": [dtypes[n] for n in offsets], "itemsize": width}))
    return {n: view[n].astype(view[n].dtype.newbyteorder("=")) for n in offsets}
