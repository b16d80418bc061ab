"""BENCHMARKS.md's section on fine-tuning variants compared on the same pretrained networks
(``bench/cool_bias.py --finetune-from TAG``)."""

from __future__ import annotations

from md._render import fmt, load, source, table, tagged, target

__all__ = ["finetune_variants_section", "is_finetune_only"]


def is_finetune_only(rec: dict) -> bool:
    """A ``cool_bias`` results file whose fits fine-tuned copies of earlier pretrained networks."""
    return all(fit.get("stage") == "finetune" for fit in rec["figures"]["fits"])


def _average(fit: dict) -> str:
    rows = [r for r in fit["rounds"] if r["round"] == "average"]
    if not rows:
        return "fewer than 2 rounds to average"
    row = rows[0]
    return (f"{row['averaged']} rounds: {row['focus_dev_loss']:.5f} vs {row['best_before']:.5f}, "
            + ("kept" if row["improved"] else "not kept"))


def _row(label: str, fit: dict, seconds: str) -> list:
    g = fit["groups"]
    kept = sum(1 for r in fit["rounds"] if r["improved"] and r["round"] != "average")
    rounds = [r for r in fit["rounds"] if r["round"] != "average"]
    return ([label, fit["recipe_seed"], seconds, f"{len(rounds)} ({kept} kept)"]
            + [" / ".join(f"{g[s][grp]['bias'][0]:+.0f}" for s in ("train", "dev", "test"))
               for grp in ("MStar", "YSO")]
            + [" / ".join(fmt(g["test"][grp]["scatter"][0], 3) for grp in ("Full", "MStar",
                                                                          "YSO"))])


def finetune_variants_section() -> str:
    names = [n for n in tagged("cool_bias") if not n.endswith("posthoc")
             and is_finetune_only(load(n))]
    if not names:
        return ""
    out = ("## Fine-tuning variants on the same pretraining (`bench/cool_bias.py "
           "--finetune-from`)\n\n"
           "Each variant fine-tunes copies of the pretrained networks of the runs named (the "
           "same three recipe seeds), so the variants differ in their fine-tuning only; `same` "
           "repeats the fine-tuning of the original runs, and shows how far two fine-tunings of "
           "one network differ by chance. Rounds: how many ran and how many passed the gate (the"
           " M dwarfs' and YSOs' dev loss lower, the whole dev loss within its tolerance). Teff "
           "bias train / dev / test (K) and the test split's Teff scatter (K) for Full / MStar /"
           " YSO; `fit (s)`: the fine-tuning alone, or the whole first fit for the original "
           "runs.\n\n")
    rows, sources, avg, worst = [], [], [], []
    origin = None
    for name in names:
        rec = load(name)
        f = rec["figures"]
        origin = origin or rec["command"].split("--finetune-from")[1].split()[0]
        label = " ".join(f["overrides"]) or "same"
        worst.append(_worst_cell(f"`{label}`", f["fits"]))
        for fit in f["fits"]:
            rows.append(_row(f"`{label}`", fit, fmt(fit["seconds"])))
            if "average_rounds=true" in f["overrides"]:
                avg.append(f"seed {fit['recipe_seed']}: {_average(fit)}")
        sources.append(source(rec, name))
    first = load(f"cool_bias-{origin}")
    if first is not None:
        rows = [_row("original fit", fit, fmt(fit["seconds"]))
                for fit in first["figures"]["fits"]] + rows
        worst.insert(0, _worst_cell("original fits", first["figures"]["fits"]))
    out += table(["fine-tuning", "seed", "fit (s)", "rounds", "MStar Teff bias",
                  "YSO Teff bias", "test Teff scatter Full / MStar / YSO"], rows)
    if avg:
        out += ("\nThe average of the rounds (`average_rounds`; the M dwarfs' and YSOs' dev "
                "loss of the average vs the best round's): " + "; ".join(avg) + ".\n")
    out += ("\nThe largest |Teff bias| / Teff scatter of the M dwarfs and YSOs over the three "
            "fits and the three splits (the dev and test groups hold a few tens of stars, N, "
            "and the ratio's standard error is 1/√N): " + "; ".join(worst) + ".\n")
    return out + "\n" + "\n\n".join(sources) + "\n\n"


def _worst_cell(label: str, fits: list[dict]) -> str:
    worst = round(_worst_ratio(fits), 2)
    return f"{label} {worst:.2f} ({target(worst, '<=', 0.3)})"


def _worst_ratio(fits: list[dict]) -> float:
    return max(abs(fit["groups"][s][g]["bias"][0]) / fit["groups"][s][g]["scatter"][0]
               for fit in fits for s in ("train", "dev", "test") for g in ("MStar", "YSO"))
