"""The ``apnet-tf`` commands that make data: synth, make-records, make-labels, yso-train and
yso-labels. Each parses its options, calls one library function and prints what it did."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from apnet_tf.cli.options import Seed, Spectra
from apnet_tf.cli.panels import ADVANCED, PERFORMANCE, RECIPE
from apnet_tf.cli.support import (
    console,
    friendly,
    int_list,
    notice,
    out,
    progress_bar,
    renamed_option,
    with_extra_paths,
    word_list,
)
from apnet_tf.errors import ApnetError
from apnet_tf.wording import counted

__all__ = ["synth", "make_records_cmd", "make_labels_cmd", "yso_train_cmd", "yso_labels_cmd"]


@friendly
def synth(out_dir: Annotated[str, typer.Option("--out", help="Folder for the FITS files, labels.csv and photometry.csv")],
          n: Annotated[int, typer.Option("--n", help="Number of stars")] = 3000,
          seed: Seed = 0,
          overwrite: Annotated[bool, typer.Option(
              "--overwrite", help="Replace another survey in --out")] = False,
          instrument: Annotated[str, typer.Option(help="apogee (apStar files) or boss (SDSS BOSS spec files)")] = "apogee",
          names: Annotated[Optional[str], typer.Option(help="BOSS file names: field (SDSS-V spec-FIELD-MJD-CATALOGID.fits), plate (SDSS-IV spec-PLATE-MJD-FIBER.fits) or both, in turn  [default: field]", rich_help_panel=ADVANCED)] = None,
          full: Annotated[bool, typer.Option("--full", help="BOSS: full spec files (a table per exposure and camera) instead of lite ones", rich_help_panel=ADVANCED)] = False) -> None:
    """Write a synthetic survey of apStar-format FITS files plus labels.csv and photometry.csv
    (Gaia EDR3 and 2MASS photometry and parallax of each star, for make-records --photometry);
    with --instrument boss, SDSS BOSS spec files and labels.csv (with RV, km/s).

    Re-running the same command resumes it; a different survey in the same folder needs
    --overwrite, so old spectra are never mixed with new ones.
    """
    from apnet_tf.data.synth_boss import survey_maker

    make = survey_maker(instrument, names, full)
    with progress_bar("synth") as update:
        table = make(out_dir, n, seed, on_progress=update, overwrite=overwrite)
    counts = table["CATEGORY"].value_counts().to_dict()
    out.print(f"wrote {len(table)} spectra and labels.csv to {out_dir} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")


@friendly
def make_records_cmd(
        ctx: typer.Context,
        spectra: Spectra,
        out_dir: Annotated[str, typer.Option(
            "--out", help="Output folder for shards and manifest.json: new, empty, or one "
                          "make-records wrote (re-running resumes it)")],
        labels: Annotated[Optional[str], typer.Option(help="Label table, CSV or FITS")] = None,
        shards: Annotated[Optional[int], typer.Option(
            help="Shards per split  [default: one per 1024 records]", rich_help_panel=PERFORMANCE)] = None,
        compress: Annotated[bool, typer.Option("--compress", help="GZIP the records", rich_help_panel=PERFORMANCE)] = False,
        mask_bits: Annotated[Optional[str], typer.Option(
            help="Comma-separated apStar PIXMASK bits that mark a pixel bad"
            "  [default: 0-6]", rich_help_panel=ADVANCED)] = None,
        photometry: Annotated[Optional[str], typer.Option(
            help="Photometry table (CSV or FITS) joined on APOGEE_ID: GAIAEDR3_PARALLAX, "
                 "GAIAEDR3_PHOT_G_MEAN_MAG, _BP_, _RP_, J, H, K; stored raw per record "
                 "(for fit --arch anet2)")] = None,
) -> None:
    """Write sharded TFRecords and manifest.json from apStar files and a label table."""
    from apnet_tf.data.records import make_records
    from apnet_tf.io.spectra import DEFAULT_MASK_BITS

    bits = DEFAULT_MASK_BITS if mask_bits is None else int_list(mask_bits, "--mask-bits")
    spectra = with_extra_paths(spectra, ctx)
    with progress_bar("make-records") as update:
        result = make_records(spectra, out_dir, labels=labels, shards=shards, compress=compress,
                              mask_bits=bits, on_progress=update, photometry=photometry)
    notice("skipped", result.failures)
    notice("note", result.report_lines)
    counts = result.manifest["counts"]
    total = sum(sum(c.values()) for c in counts.values())
    out.print(f"wrote {counted(total, 'record')} in {counted(len(result.written_shards), 'new shard')} "
              f"({len(result.skipped_shards)} already complete) to {out_dir}")
    for split, cats in counts.items():
        out.print(f"  {split:10s} " + "  ".join(f"{k} {v}" for k, v in sorted(cats.items())))
    stats = result.manifest["target_stats"]
    if stats["mean"][0] is not None:
        out.print("  train mean/std: " + "  ".join(
            f"{name} {m:.4g}/{s:.4g}" if s is not None else f"{name} {m:.4g}/-"
            for name, m, s in zip(result.manifest["targets"], stats["mean"], stats["std"])))
    phot = result.manifest.get("photometry")
    if phot:
        out.print(f"  photometry: {phot['records'] - phot['absent']} records from {photometry}, "
                  f"{phot['absent']} absent from it (stored missing); missing values: "
                  + "  ".join(f"{band} {n}" for band, n in phot["missing"].items()))
    if result.failures:
        console.print(f"[yellow]{counted(len(result.failures), 'file')} skipped[/yellow]; the "
                      "rest were written")
        raise typer.Exit(2)


@friendly
def make_labels_cmd(
        out_path: Annotated[str, typer.Option(
            "--out", help="Label table to write: .csv or .fits (an existing file is replaced, whole)")],
        payne: Annotated[Optional[str], typer.Option(help="Payne table: APOGEE_ID, TEFF, LOGG, FE_H")] = None,
        label_photometry: Annotated[Optional[str], typer.Option(
            help="Photometry of the M-dwarf candidates: APOGEE_ID, J, H, K, G_PS1, R_PS1, PARALLAX, PARALLAX_ERROR [, FIELD]")] = None,
        old_photometry: Annotated[Optional[str], typer.Option("--photometry", hidden=True)] = None,
        yso: Annotated[Optional[str], typer.Option(help="YSO labels: APOGEE_ID, TEFF, LOGG, FE_H")] = None,
        gk_margin: Annotated[float, typer.Option(help="Widening of the g-K cut (mag)", rich_help_panel=ADVANCED)] = 0.03,
        yso_fields: Annotated[Optional[str], typer.Option(
            help="Comma-separated APOGEE field patterns that go to the YSO route", rich_help_panel=ADVANCED)] = None,
) -> None:
    """Build the training label table: Payne rule, M-dwarf photometric labels, YSO labels."""
    from apnet_tf.labels.photometric import DEFAULT_YSO_FIELDS, make_labels

    label_photometry = renamed_option(label_photometry, old_photometry, "--photometry",
                                      "--label-photometry")
    fields = DEFAULT_YSO_FIELDS if yso_fields is None else word_list(yso_fields)
    result = make_labels(out_path, payne=payne, label_photometry=label_photometry, yso=yso,
                         gk_margin=gk_margin, yso_fields=fields)
    notice("note", result.notes)
    out.print(f"wrote the labels of {counted(len(result.table), 'star')} to {out_path}; stars "
              "at each step:")
    for key, value in result.counts.items():
        out.print(f"  {key:28s} {value}")


@friendly
def yso_train_cmd(
        isochrones: Annotated[list[str], typer.Option(
            help="PARSEC CMD isochrone table(s) (text or CSV); repeat to join Gaia and 2MASS+WISE files")],
        out_dir: Annotated[str, typer.Option("--out", help="Folder for network.keras and yso.json")],
        n_train: Annotated[int, typer.Option(help="Synthetic training stars (paper: ~42,000)", rich_help_panel=RECIPE)] = 42000,
        n_val: Annotated[int, typer.Option(help="Held-out synthetic stars for early stopping", rich_help_panel=RECIPE)] = 4000,
        epochs: Annotated[int, typer.Option(help="Most epochs", rich_help_panel=RECIPE)] = 200,
        patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs)", rich_help_panel=RECIPE)] = 12,
        extinction: Annotated[Optional[str], typer.Option(
            help="A_band/A_V overrides, e.g. G=0.83,BP=1.08 [default: Wang & Chen 2019]", rich_help_panel=ADVANCED)] = None,
        noise: Annotated[float, typer.Option(help="Gaussian magnitude scatter (paper: none)", rich_help_panel=RECIPE)] = 0.0,
        age_spacing: Annotated[str, typer.Option(help="Ages uniform in linear Myr (paper) or log", rich_help_panel=RECIPE)] = "linear",
        seed: Seed = 0,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a network already in --out")] = False,
) -> None:
    """Train the paper's photometric YSO network (section 2.3) on synthetic isochrone stars."""
    from apnet_tf.labels.isochrones import extinction_coefficients
    from apnet_tf.labels.yso import OUTPUTS, yso_train

    if min(n_train, n_val, epochs, patience) < 1 or age_spacing not in ("linear", "log") \
            or not noise >= 0:
        raise ApnetError("--n-train, --n-val, --epochs, --patience must be >= 1, --noise >= 0, "
                         "--age-spacing linear or log")

    def report(epoch: int, logs: dict) -> None:
        out.print(f"epoch {epoch:3d}  loss {logs['loss']:.4f}  held-out {logs['val_loss']:.4f}")

    result = yso_train(isochrones, out_dir, overwrite=overwrite, n_train=n_train, n_val=n_val,
                       epochs=epochs, patience=patience,
                       coefficients=extinction_coefficients(extinction), noise=noise,
                       age_spacing=age_spacing, seed=seed, on_epoch=report)
    if result.info["coverage_note"]:
        console.print(f"note: {result.info['coverage_note']}", highlight=False)
    out.print(f"wrote {out_dir} ({result.info['epochs_run']} epochs, "
              f"{result.info['train_seconds']:.0f} s); held-out synthetic stars "
              f"(n={result.metrics['n']}): median |error|, robust sigma")
    for name in OUTPUTS:
        m = result.metrics[name]
        out.print(f"  {name:9s} {m['median_abs']:.4f}  {m['robust_sigma']:.4f}")


@friendly
def yso_labels_cmd(
        model: Annotated[str, typer.Option(help="Folder from yso-train (or its network.keras)")],
        out_path: Annotated[str, typer.Option("--out", help="YSO label table to write (CSV)")],
        members: Annotated[Optional[str], typer.Option(
            help="Photometry of the cluster members: APOGEE_ID, G, BP, RP, PARALLAX (mas), J, H, K, W1, W2, W3 [, RADIUS_VAL, LUM_VAL]")] = None,
        old_photometry: Annotated[Optional[str], typer.Option("--photometry", hidden=True)] = None,
) -> None:
    """YSO labels (TEFF, LOGG, FE_H=0, AGE, MASS, AV) for make-labels --yso."""
    from apnet_tf.labels.yso_labels import yso_labels

    members = renamed_option(members, old_photometry, "--photometry", "--members")
    if members is None:
        raise ApnetError("yso-labels needs --members: the cluster members' photometry table")
    result = yso_labels(model, members, out_path)
    for band in result.absent_columns:
        console.print(f"note: no {band} column: set to its detection limit for every star")
    for apogee_id, reason in result.skipped:
        console.print(f"skipped {apogee_id}: {reason}", highlight=False)
    flagged = int(result.table["FLAG_EXTRAPOLATED"].sum())
    gaps = int((result.table["MISSING_BANDS"] != "").sum())
    out.print(f"wrote {len(result.table)} YSO labels to {out_path} ({len(result.skipped)} "
              f"skipped, {flagged} outside the training ranges: FLAG_EXTRAPOLATED, {gaps} with "
              f"unmeasured bands set to their limits: MISSING_BANDS)")
