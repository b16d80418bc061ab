"""Write BENCHMARKS.md from the results files in bench/results/ (one per script).

Every figure in BENCHMARKS.md comes from a results file that a script in bench/ wrote, with the
commit, the machine, the date and the command; this script only lays them out, so the page
cannot drift from what was measured (tests/test_benchmarks.py checks that it is up to date).

    python bench/benchmarks_md.py          # rewrite BENCHMARKS.md
    python bench/benchmarks_md.py --check  # exit 1 if BENCHMARKS.md differs
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from md.accuracy import (  # noqa: E402
    accuracy_section,
    fit_anet3_section,
    photometry_section,
    time_to_accuracy_section,
    yso_section,
)
from md.calibration import (  # noqa: E402
    calibration_cost_section,
    calibration_section,
    novelty_section,
    spikes_section,
)
from md.finetune_variants import finetune_variants_section  # noqa: E402
from md.information import cool_bias_section, information_section, refit_section  # noqa: E402
from md.precision_memory import (  # noqa: E402
    memory_bossnet_section,
    memory_section,
    precision_bossnet_section,
    precision_section,
)
from md.published import published_bossnet_section, published_section  # noqa: E402
from md.speed import (  # noqa: E402
    determinism_section,
    export_section,
    infer_section,
    projection_section,
    records_section,
    survey_section,
    train_section,
)

__all__ = ["page", "main"]

PAGE = os.path.join(HERE, "..", "BENCHMARKS.md")


HEADER = """# Benchmarks

Every figure below comes from a results file in `bench/results/`, written by the script in
`bench/` named in each section's title, with the commit, the machine, the date, the command and
the load average of the machine when it ran. This page is made from those files by
`python bench/benchmarks_md.py`; nothing on it is typed by hand. Each figure is a ratio against a
reference measured in the same run, next to its absolute value. The scripts cache their
synthetic surveys under `.bench/` (git-ignored).

The project's machines are x86_64 with 2 cores and no GPU. Where the load average is above 2,
other jobs shared the cores: the absolute rates are then low, and the ratios (both sides measured
in the same run, alternating) are the figures to read. Earlier measurements, made before the
results files existed, are in the git history of this page (commit 46a1f2b and before).

"""


def page() -> str:
    sections = [records_section, train_section, determinism_section, accuracy_section,
                time_to_accuracy_section, information_section, cool_bias_section,
                finetune_variants_section, refit_section,
                photometry_section, fit_anet3_section, infer_section, precision_section,
                published_section, published_bossnet_section, precision_bossnet_section,
                survey_section, projection_section, memory_section, memory_bossnet_section,
                calibration_section,
                calibration_cost_section, export_section, yso_section,
                novelty_section, spikes_section]
    return HEADER + "\n".join(s() for s in sections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if BENCHMARKS.md is stale")
    args = ap.parse_args()
    text = page()
    if args.check:
        with open(PAGE) as f:
            sys.exit(0 if f.read() == text else 1)
    with open(PAGE, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(PAGE)}")


if __name__ == "__main__":
    main()
