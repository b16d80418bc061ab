"""What a catalog holds, counted once (io.catalog_counts): infer's closing line and the catalog
header say the same numbers, each with what it counts, in the right number."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import cli


def _catalog(n: int = 200):
    from astropy.table import Table

    from apnet_tf.io.catalog_flags import BAD_BITS, flag_value

    rng = np.random.default_rng(5)
    flag = np.zeros(n, np.int64)
    flag[:3] |= flag_value("OUTSIDE_LABEL_RANGE")  # BAD
    flag[2] |= flag_value("NOT_FINITE")  # BAD, on a star that has another BAD bit
    flag[10:30] |= flag_value("LOW_SNR")  # 10%: frequent
    flag[40] |= flag_value("TEFF_EDGE")  # 0.5%: not frequent
    filled = np.zeros(n, np.int64)
    filled[50:58] = 2  # G filled
    filled[58:61] = 127  # every band: no photometry at all
    flag[filled != 0] |= flag_value("PHOT_FILLED")
    return Table({"TEFF": rng.uniform(3000, 6000, n), "YSO_CANDIDATE": np.arange(n) == 7,
                  "APNET_FLAG": flag, "BAD": (flag & BAD_BITS) != 0, "PHOT_FILLED": filled})


def test_counts_and_phrases_say_what_they_count():
    from apnet_tf.io.catalog_counts import catalog_counts, count_phrases

    counts = catalog_counts(_catalog())
    assert (counts.stars, counts.yso, counts.bad) == (200, 1, 3)
    assert (counts.phot_filled, counts.phot_none) == (11, 3)
    assert counts.bits["LOW_SNR"] == 20 and counts.bits["PHOT_FILLED"] == 11
    assert count_phrases(counts) == [
        "1 YSO candidate", "3 flagged BAD (OUTSIDE_LABEL_RANGE 3, NOT_FINITE 1)",
        "20 flagged LOW_SNR", "11 with photometry filled in (3 with none at all)"]


def test_plurals_and_a_catalog_without_photometry():
    from apnet_tf.io.catalog_counts import catalog_counts, count_phrases
    from apnet_tf.wording import counted

    table = _catalog()[:4]
    del table["PHOT_FILLED"]
    table["YSO_CANDIDATE"] = [True, True, False, False]
    phrases = count_phrases(catalog_counts(table))
    assert phrases[0] == "2 YSO candidates"
    assert not any("photometry" in p for p in phrases)
    cases = ((1, "star"), (0, "star"), (1, "spectrum"), (3, "spectrum"), (1, "epoch"),
             (4, "epoch"), (2, "new shard"))
    assert [counted(n, w) for n, w in cases] == [
        "1 star", "0 stars", "1 spectrum", "3 spectra", "1 epoch", "4 epochs", "2 new shards"]


@pytest.mark.parametrize("name", ["cat.fits", "cat.csv"])
def test_the_header_holds_the_same_counts(name, tmp_path):
    from astropy.table import Table

    from apnet_tf.io.catalog import write_catalog
    from apnet_tf.io.catalog_flags import FLAG_BITS

    write_catalog(_catalog(), str(tmp_path / name))
    meta = Table.read(tmp_path / name, **({"format": "ascii.ecsv"} if name.endswith("csv")
                                           else {})).meta
    assert (meta["NYSO"], meta["NBAD"], meta["NPHOTFIL"], meta["NPHOTNON"]) == (1, 3, 11, 3)
    assert [meta[f"NFLAG{b.bit:02d}"] for b in FLAG_BITS] == [
        {"OUTSIDE_LABEL_RANGE": 3, "NOT_FINITE": 1, "LOW_SNR": 20, "TEFF_EDGE": 1,
         "PHOT_FILLED": 11}.get(b.name, 0) for b in FLAG_BITS]
    if name.endswith(".fits"):
        from astropy.io import fits

        header = fits.getheader(tmp_path / name, "CATALOG")
        assert header.comments["NBAD"] == "stars flagged BAD"
        assert header.comments["NFLAG05"] == "stars with APNET_FLAG bit 5 LOW_SNR"


def test_infer_closing_line_counts_in_words(untrained_run, apstar_files, tmp_path):
    """Before: "(1 YSO candidates, 4 flagged BAD; ...)" whatever the numbers."""
    from astropy.table import Table

    from apnet_tf.io.catalog_counts import catalog_counts, count_phrases

    res = cli("infer", "--model", untrained_run, "--spectra", apstar_files[0].parent, "--out",
              tmp_path / "cat.fits", "--mc", "0")
    assert res.exit_code == 0, res.output
    cat = Table.read(tmp_path / "cat.fits")
    line = res.stdout.strip().splitlines()[-1]
    assert line == (f"wrote {len(cat)} stars to {tmp_path / 'cat.fits'} ("
                    f"{', '.join(count_phrases(catalog_counts(cat)))}; sigma: none)")
    yso = int(np.sum(cat["YSO_CANDIDATE"]))
    assert f"{yso} YSO candidate{'' if yso == 1 else 's'}," in line
    assert cat.meta["NYSO"] == yso and cat.meta["MCVALUE"] == "single pass"
