"""How the package words a count for people: the number and its noun, singular or plural
("1 YSO candidate", "2 YSO candidates", "1 spectrum"), so that every count printed says what it
counts."""

from __future__ import annotations

__all__ = ["IRREGULAR", "plural", "counted", "fine_tuning_round"]

#: Nouns whose plural is not the singular plus "s".
IRREGULAR = {"spectrum": "spectra", "epoch": "epochs", "was": "were", "it": "they", "has": "have"}


def plural(n: int, noun: str) -> str:
    """``noun`` in the number that goes with ``n`` ("star" for 1, "stars" otherwise)."""
    if int(n) == 1:
        return noun
    return IRREGULAR.get(noun, noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s"))


def counted(n: int, noun: str) -> str:
    """``n`` and its noun: "1 star", "24 stars", "1 spectrum", "0 YSO candidates". The noun may
    be several words; the last one takes the number ("YSO candidate")."""
    head, _, last = noun.rpartition(" ")
    return f"{int(n)} " + (f"{head} " if head else "") + plural(n, last)


def fine_tuning_round(row: dict, seed: bool = False) -> str:
    """What a row of finetune_rounds.csv was, as fit's lines name it: "round 2: 7 epochs" (with
    ``seed``, "round 2 (seed 1002): 7 epochs"), or "the average of 3 rounds' weights"."""
    if row["round"] == "average":
        return f"the average of {row['averaged']} rounds' weights"
    return (f"round {row['round']}" + (f" (seed {row['seed']})" if seed else "")
            + f": {counted(row['epochs'], 'epoch')}")
