"""What a catalog holds, in numbers: its YSO candidates, its BAD stars, the stars whose
photometry a two-input network had filled in, and the stars with each APNET_FLAG bit set.

Counted once, from the catalog's own columns (``catalog_counts``), for the two places that say
them: the closing line of ``infer`` (``count_phrases``) and the catalog header
(``count_keywords``, written by ``io.catalog``). A new flag bit (``catalog_flags.FLAG_BITS``)
or another count of the photometry (stars missing from the photometry table) is counted by
adding it here, and both places say it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from apnet_tf.io.catalog_flags import FLAG_BITS
from apnet_tf.io.photometry import PHOT_BANDS
from apnet_tf.wording import counted

__all__ = ["FREQUENT_FRACTION", "CatalogCounts", "catalog_counts", "count_keywords",
           "COUNT_COMMENTS", "count_phrases"]

#: The closing line names a flag bit that is not BAD when at least this fraction of the stars
#: (and at least one) have it; BAD bits are named whenever set, since they say why stars are
#: BAD. The header counts every bit.
FREQUENT_FRACTION = 0.01
#: PHOT_FILLED value of a star every one of whose bands was filled in (none given).
_ALL_BANDS = (1 << len(PHOT_BANDS)) - 1
#: Bits that the closing line says in words of their own.
_SAID_IN_WORDS = ("PHOT_FILLED",)


@dataclasses.dataclass(frozen=True)
class CatalogCounts:
    """Counts of one catalog's stars. ``phot_filled`` and ``phot_none`` are None for a catalog
    without the PHOT_FILLED column (a network that takes no photometry)."""

    stars: int
    yso: int  # YSO candidates
    bad: int  # stars flagged BAD
    phot_filled: int | None  # stars with at least one photometry band filled in
    phot_none: int | None  # of those, stars with every band filled in: no photometry at all
    bits: dict[str, int]  # APNET_FLAG bit name -> stars with it set, every bit, in bit order


def catalog_counts(table) -> CatalogCounts:
    """The counts of a catalog (astropy Table or a mapping of its columns); a column the
    catalog lacks counts 0 (None for the photometry)."""
    names = table.colnames if hasattr(table, "colnames") else list(table)
    n = len(table[names[0]]) if names else 0

    def column(name: str, dtype) -> np.ndarray:
        return np.asarray(table[name], dtype) if name in names else np.zeros(n, dtype)

    flag = column("APNET_FLAG", np.int64)
    filled = np.asarray(table["PHOT_FILLED"], np.int64) if "PHOT_FILLED" in names else None
    return CatalogCounts(
        stars=n, yso=int(column("YSO_CANDIDATE", bool).sum()), bad=int(column("BAD", bool).sum()),
        phot_filled=None if filled is None else int((filled != 0).sum()),
        phot_none=None if filled is None else int(((filled & _ALL_BANDS) == _ALL_BANDS).sum()),
        bits={b.name: int(((flag >> b.bit) & 1).sum()) for b in FLAG_BITS})


#: Header keyword -> its comment, for every count ``count_keywords`` can write.
COUNT_COMMENTS = {
    "NYSO": "stars that are YSO candidates", "NBAD": "stars flagged BAD",
    "NPHOTFIL": "stars with photometry filled in (PHOT_FILLED)",
    "NPHOTNON": "stars with every photometry band filled in",
    **{f"NFLAG{b.bit:02d}": f"stars with APNET_FLAG bit {b.bit} {b.name}" for b in FLAG_BITS},
}


def count_keywords(counts: CatalogCounts) -> dict[str, int]:
    """The counts as catalog header keywords (``COUNT_COMMENTS`` says what each is): NYSO,
    NBAD, NPHOTFIL and NPHOTNON (two-input networks only), and NFLAGnn for every bit nn."""
    out = {"NYSO": counts.yso, "NBAD": counts.bad}
    if counts.phot_filled is not None:
        out.update(NPHOTFIL=counts.phot_filled, NPHOTNON=counts.phot_none)
    by_name = {b.name: b.bit for b in FLAG_BITS}
    out.update({f"NFLAG{by_name[name]:02d}": n for name, n in counts.bits.items()})
    return out


def count_phrases(counts: CatalogCounts) -> list[str]:
    """The counts as phrases for a closing line: "1 YSO candidate", "4 flagged BAD
    (OUTSIDE_LABEL_RANGE 4)", "3 flagged LOW_SNR" for each frequent bit that is not BAD, and
    "8 with photometry filled in (5 with none at all)" for a two-input network."""
    bad_bits = {b.name for b in FLAG_BITS if b.bad}
    ranked = sorted(((n, name) for name, n in counts.bits.items() if n),
                    key=lambda item: -item[0])
    why = [f"{name} {n}" for n, name in ranked if name in bad_bits]
    out = [counted(counts.yso, "YSO candidate"),
           f"{counts.bad} flagged BAD" + (f" ({', '.join(why)})" if counts.bad and why else "")]
    least = max(1, int(np.ceil(FREQUENT_FRACTION * counts.stars)))
    out += [f"{n} flagged {name}" for n, name in ranked
            if name not in bad_bits and name not in _SAID_IN_WORDS and n >= least]
    if counts.phot_filled is not None:
        none = f" ({counts.phot_none} with none at all)" if counts.phot_none else ""
        out.append(f"{counts.phot_filled} with photometry filled in{none}")
    return out
