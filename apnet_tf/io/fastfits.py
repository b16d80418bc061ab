"""Row 0 of a few image HDUs of an uncompressed FITS file, without building astropy HDU objects.

Parsing every card of every header through ``astropy.io.fits.open`` costs about 4 ms per apStar
file, more than reading the pixels; a survey has 10^5 to 10^7 files. This reader walks the
headers' 2880-byte blocks, keeps only the cards it is asked for (strings, logicals, integers and
reals, parsed by the FITS rules), skips the data units by their declared size, and reads only row
0 of each wanted image. A card it cannot parse, or anything it does not handle plainly
(compression, scaled integers, a non-image extension) raises ``Unsupported``, and the caller
falls back to astropy.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from apnet_tf.errors import ApnetError

__all__ = ["BLOCK", "CARD", "Unsupported", "Truncated", "scan_header", "card_value", "data_size",
           "read_rows"]

BLOCK = 2880
CARD = 80
_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_STRUCTURE = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT",
              "GCOUNT", "BZERO", "BSCALE")


class Unsupported(Exception):
    """The file is valid FITS perhaps, but not the plain kind this reader handles."""


class Truncated(Unsupported):
    """The file ends inside a header."""


def scan_header(f, wanted: Callable[[str], bool]) -> tuple[dict, int] | None:
    """{keyword: value} of the first card of each keyword ``wanted`` accepts, read from the
    header at the file's position, and the header's length in bytes; None at the end of the file.

    Raises:
        Truncated: the file ends inside the header.
        Unsupported: a wanted card's value cannot be parsed.
    """
    raw: dict[str, bytes] = {}
    size = 0
    while True:
        block = f.read(BLOCK)
        if len(block) < BLOCK:
            if size == 0 and not block:
                return None
            raise Truncated
        size += BLOCK
        for i in range(0, BLOCK, CARD):
            key = block[i:i + 8].rstrip().decode("ascii", "replace")
            if key == "END":
                return {k: card_value(c) for k, c in raw.items()}, size
            if key not in raw and wanted(key):
                raw[key] = block[i:i + CARD]


def _header(f, path: str, keys: tuple[str, ...]) -> tuple[dict, int]:
    """{keyword: value} of ``keys`` and the structural keywords; the header's length in bytes."""
    try:
        found = scan_header(f, lambda key: key in keys or key in _STRUCTURE)
    except Truncated:
        raise ApnetError(f"{path}: not a readable apStar FITS file (truncated header)") from None
    if found is None:
        raise IndexError("no such HDU")
    return found


def card_value(card: bytes):
    """The value of a FITS card: str, bool, int or float (fixed or free format)."""
    if card[8:10] != b"= ":
        raise Unsupported
    text = card[10:].decode("ascii", "replace").strip()
    if text.startswith("'"):
        out, i = [], 1
        while True:
            j = text.find("'", i)
            if j < 0:
                raise Unsupported
            out.append(text[i:j])
            if text[j + 1:j + 2] != "'":
                return "".join(out).rstrip()
            out.append("'")
            i = j + 2
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.replace("D", "E"))
    except ValueError:
        raise Unsupported from None


def data_size(h: dict, padded: bool = True) -> int:
    """Bytes of an HDU's data unit from its header values (padded to whole 2880-byte blocks)."""
    naxis = int(h.get("NAXIS", 0))
    if naxis == 0:
        return 0
    n = 1
    for k in range(1, naxis + 1):
        n *= int(h[f"NAXIS{k}"])
    bits = abs(int(h["BITPIX"]))
    size = bits // 8 * int(h.get("GCOUNT", 1)) * (int(h.get("PCOUNT", 0)) + n)
    return -(-size // BLOCK) * BLOCK if padded else size


def read_rows(path: str, n_hdus: int, primary_keys: tuple[str, ...],
              first_keys: tuple[str, ...]) -> tuple[dict, list[np.ndarray | None]]:
    """Values of ``primary_keys`` (primary header) and ``first_keys`` (HDU 1), and row 0 of
    HDUs 1..n_hdus (their whole array when 1-D; None when they hold no data).

    Raises:
        Unsupported: not a plain FITS file of image extensions; use astropy instead.
        ApnetError: the file is truncated or lacks an HDU (the message names the file).
        OSError: the file cannot be opened.
    """
    with open(path, "rb") as f:
        if f.read(6) != b"SIMPLE":
            raise Unsupported
        f.seek(0)
        file_size = os.fstat(f.fileno()).st_size
        header, pos = {}, 0
        rows: list[np.ndarray | None] = []
        for k in range(n_hdus + 1):
            f.seek(pos)
            try:
                h, hsize = _header(f, path, primary_keys if k == 0 else first_keys)
            except IndexError:
                raise ApnetError(f"{path}: has {k} HDUs, an apStar file needs flux, error and "
                                 f"mask in HDUs 1-{n_hdus}") from None
            if k == 0:
                header.update({key: h.get(key) for key in primary_keys})
            else:
                if h.get("XTENSION") != "IMAGE" or h.get("BZERO", 0) != 0 or \
                        h.get("BSCALE", 1) != 1 or int(h["BITPIX"]) not in _DTYPES:
                    raise Unsupported
                if k == 1:
                    header.update({key: h.get(key) for key in first_keys})
                rows.append(_row0(f, h, pos + hsize))
            end = pos + hsize + data_size(h, padded=False)
            if end > file_size:
                raise ApnetError(f"{path}: not a readable apStar FITS file (truncated: "
                                 f"{file_size} bytes, HDU {k} ends at byte {end})")
            pos += hsize + data_size(h)
    return header, rows


def _row0(f, h: dict, start: int) -> np.ndarray | None:
    naxis = int(h.get("NAXIS", 0))
    if naxis == 0 or any(int(h[f"NAXIS{k}"]) == 0 for k in range(1, naxis + 1)):
        return None  # no data: what follows the header is the next HDU's
    dtype = np.dtype(_DTYPES[int(h["BITPIX"])])
    n = int(h["NAXIS1"])
    if naxis == 1:
        shape = (n,)
    else:
        shape = tuple(int(h[f"NAXIS{k}"]) for k in range(naxis - 1, 0, -1))
    f.seek(start)
    data = f.read(int(np.prod(shape)) * dtype.itemsize)
    if len(data) < int(np.prod(shape)) * dtype.itemsize:
        raise ApnetError(f"{f.name}: not a readable apStar FITS file (truncated data)")
    return np.frombuffer(data, dtype).reshape(shape)
