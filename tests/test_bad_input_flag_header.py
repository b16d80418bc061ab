"""A catalog's header says what each APNET_FLAG bit tests, one COMMENT card per bit, and points
to nothing that does not exist (BAD_INPUT.md, "Flags that explain themselves")."""

from __future__ import annotations

import shutil

import pytest
from astropy.io import fits
from astropy.table import Table
from cli_helpers import cli

from apnet_tf.io.catalog_flags import COMMENT_WIDTH, FLAG_BITS, flag_comments


def test_every_bit_has_a_test_that_fits_one_card():
    lines = flag_comments()
    assert len(lines) == len(FLAG_BITS) + 1
    assert all(b.test for b in FLAG_BITS)
    assert [line for line in lines if len(line) > COMMENT_WIDTH] == []
    for b, line in zip(FLAG_BITS, lines[1:]):
        assert line.startswith(f"{b.bit} {b.name}{' BAD' if b.bad else ''}: "), line
        assert line.endswith(b.test)


@pytest.fixture(scope="module")
def catalogs(small_survey, untrained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("flag_header")
    (folder / "in").mkdir()
    for f in sorted(small_survey.glob("apStar-*.fits"))[:2]:
        shutil.copy(f, folder / "in")
    out = {}
    for suffix in ("fits", "csv"):
        out[suffix] = folder / f"cat.{suffix}"
        res = cli("infer", "--model", untrained_run, "--spectra", folder / "in", "--out",
                  out[suffix], "--mc", 0)
        assert res.exit_code == 0, res.output
    return out


def test_a_fits_catalog_has_a_comment_card_per_bit(catalogs):
    """Fails on the old code: no COMMENT cards, and APNET_FLAG's TCOMM pointed to a README
    table that does not exist."""
    with fits.open(catalogs["fits"]) as hdul:
        header = hdul["CATALOG"].header
        comments = [str(c) for c in header["COMMENT"]]
        text = header.tostring()
    assert "README" not in text
    for b in FLAG_BITS:
        mine = [c for c in comments if c.startswith(f"{b.bit} {b.name}")]
        assert len(mine) == 1 and b.test in mine[0], (b.name, comments)
    assert Table.read(catalogs["fits"]).meta["comments"] == flag_comments()


def test_a_csv_catalog_carries_the_same_lines(catalogs):
    """Fails on the old code: the ECSV header held no test of any bit."""
    meta = Table.read(catalogs["csv"], format="ascii.ecsv").meta
    assert meta["comments"] == flag_comments()
    assert "README" not in catalogs["csv"].read_text().split("\nAPOGEE_ID", 1)[0]
