"""What every ``apnet-tf`` command shares: the consoles, the error wrapper, progress bars, the
printers of fit's epochs and rounds, and the parsers of comma-separated option values.

Importing this module does not import TensorFlow (``--help`` must answer at once).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from apnet_tf.constants import RENAMED
from apnet_tf.errors import ApnetError
from apnet_tf.wording import fine_tuning_round, plural

__all__ = [
    "console", "out", "MANY_PATHS", "STEP_UNITS", "import_tensorflow", "one_line_errors",
    "friendly", "error", "notice",
    "renamed_choice", "renamed_option", "require_options",
    "StepBars", "step_bars", "progress_bar", "fit_printers", "round_verdict", "with_extra_paths", "int_list",
    "float_triple", "word_list"
]

# soft_wrap: a line written to a log file stays one line, whatever the width
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True, markup=False, highlight=False)  # results, printed as written

#: Lets ``--spectra a.fits b.fits c.fits`` (a shell glob) pass several paths after one flag.
MANY_PATHS = {"allow_extra_args": True, "ignore_unknown_options": False}
#: What a step's progress counts, when not spectra: its marker line says it.
STEP_UNITS = {"fit": "epoch"}


def import_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up log lines (oneDNN, CUDA probing) silenced.

    Called when a command runs, never at import time, so that ``--help`` prints in well under
    a second.
    """
    if "tensorflow" in sys.modules:
        return
    from apnet_tf.quiet import native_stderr_silenced

    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()


def one_line_errors(fn):
    """Run the command; turn ApnetError into one red line on stderr and exit code 1, never a
    traceback (``friendly`` without the TensorFlow import, for a command that may not need it)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApnetError as exc:
            error(str(exc))
            raise typer.Exit(1)
        except OSError as exc:  # disk full, permissions, a folder that is a file, ...
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            error(where + str(exc.strerror or exc))
            raise typer.Exit(1)
        except KeyboardInterrupt:
            console.print("[red]interrupted[/red]; re-run the same command to resume")
            raise typer.Exit(130)
    return wrapper


def friendly(fn):
    """Import TensorFlow quietly, then run the command, its errors one line each
    (``one_line_errors``)."""
    @one_line_errors
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import_tensorflow()
        return fn(*args, **kwargs)
    return wrapper


def error(text: str) -> None:
    """One red ``error:`` line on stderr, the text printed as written."""
    console.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)


def renamed_choice(value: str | None, option: str) -> str | None:
    """``value``, or its new name with a one-line note when it is a spelling this release
    renamed (``constants.RENAMED``); the old one is accepted for one release."""
    if value in RENAMED:
        notice("note", [f"{option} {value} is now {option} {RENAMED[value]}; the old name is "
                        "accepted until the next release"])
        return RENAMED[value]
    return value


def renamed_option(value, old_value, old: str, new: str):
    """The value of option ``new``, or of its old spelling ``old`` with a one-line note (the
    old spelling is accepted for one release).

    Raises:
        ApnetError: both spellings were given.
    """
    if old_value is None:
        return value
    if value is not None:
        raise ApnetError(f"{old} is the old name of {new}; give one of them")
    notice("note", [f"{old} is now {new}; the old name is accepted until the next release"])
    return old_value


def notice(tag: str, lines) -> None:
    """A yellow ``tag:`` line on stderr for each of ``lines`` (skipped files, notes)."""
    for line in lines:
        console.print(f"[yellow]{tag}:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)


class StepBars:
    """``on_progress(step, done, total)`` for a job of several steps: one bar per step, added
    when the step first reports. Without bars (not a terminal: a log file), each step that did
    any work gets one marker line instead, ``step: N of N spectra done in T s`` (what it counts
    from ``STEP_UNITS``), when it completes."""

    def __init__(self, bar: Progress, markers: bool):
        self._bar, self._tasks, self._markers = bar, {}, markers
        self._state: dict[str, list] = {}  # step -> [start, done, total, marked]

    def __call__(self, step: str, done: int, total: int | None) -> None:
        if step not in self._tasks:
            self._tasks[step] = self._bar.add_task(step, total=None)
            self._state[step] = [time.perf_counter(), 0, None, False]
        self._bar.update(self._tasks[step], completed=done, total=total)
        state = self._state[step]
        state[1:3] = done, total
        if total is not None and done >= total > 0:
            self.mark(step)

    def mark(self, step: str) -> None:
        """The step's marker line, once, if markers are on and the step did any work."""
        start, done, total, marked = self._state[step]
        if self._markers and not marked and done > 0:
            of = f" of {total}" if total is not None else ""
            unit = plural(done if total is None else total, STEP_UNITS.get(step, "spectrum"))
            console.print(f"{step}: {done}{of} {unit} done in "
                          f"{time.perf_counter() - start:.1f} s", highlight=False, markup=False)
        self._state[step][3] = True

    def finish(self) -> None:
        for step in self._state:
            self.mark(step)


@contextlib.contextmanager
def step_bars() -> Iterator[StepBars]:
    """Yield a ``StepBars`` on stderr; bars show on a terminal (or with APNET_PROGRESS=1),
    marker lines otherwise (none for a step cut short by an error)."""
    disable = not sys.stderr.isatty() and os.environ.get("APNET_PROGRESS") != "1"
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=False, disable=disable,
                  ) as bar:
        bars = StepBars(bar, markers=disable)
        yield bars
        bars.finish()


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """Yield an ``on_progress(done, total)`` callback that drives a rich progress bar."""
    with step_bars() as bars:
        bars(description, 0, None)  # the bar shows from the start, before the first report
        yield functools.partial(bars, description)


def fit_printers(update: Callable[[int, int | None], None]) -> tuple[Callable, Callable]:
    """``(on_epoch, on_round)`` for ``training.fit``: each epoch and each fine-tuning round as a
    line on stderr, and ``update(epochs so far, None)`` after each epoch."""
    state = {"n": 0, "kept": False}

    def on_epoch(stage_name, epoch, logs):
        state["n"] += 1
        update(state["n"], None)
        console.print(f"{stage_name} epoch {epoch}: standardised MSE, training "
                      f"{logs.get('loss', float('nan')):.4f}, dev "
                      f"{logs.get('val_loss', float('nan')):.4f}", highlight=False)

    def on_round(row):
        # what a round is compared with: the pretrained model's mstar+yso dev loss until a
        # round improves on it, then the best round's
        ref = "best round's" if state["kept"] else "pretrained model's"
        state["kept"] = state["kept"] or row["improved"]
        console.print(f"fine-tune {fine_tuning_round(row, seed=True)}, "
                      f"{round_verdict(row, ref)}", highlight=False, markup=False)

    return on_epoch, on_round


def round_verdict(row: dict, ref: str) -> str:
    """Why a fine-tuning round was kept or not, with enough digits to show the comparison that
    decided it (``rolling_resample``'s row; ``ref`` names what it had to beat)."""
    focus, before = row["focus_dev_loss"], row["best_before"]
    whole, limit = row.get("dev_loss"), row.get("dev_limit")
    f, b = _distinct(focus, before)
    if focus >= before:
        return (f"not kept: mstar+yso dev loss {f} is not below the {ref} {b}")
    w, lim = _distinct(whole, limit) if whole is not None and limit is not None else ("", "")
    if not row["improved"]:
        return (f"not kept: mstar+yso dev loss {f} is below the {ref} {b}, but the whole-dev "
                f"loss {w} is above its limit {lim} (--finetune-dev-tolerance)")
    kept = f"kept: mstar+yso dev loss {f} is below the {ref} {b}"
    return kept + (f", whole-dev loss {w} within its limit {lim}" if w else "")


def _distinct(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with 4 decimals, or as many more (up to 10) as it takes to tell them
    apart."""
    for digits in range(4, 11):
        x, y = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if x != y:
            break
    return x, y


def require_options(ctx: typer.Context, values: dict) -> None:
    """Click's usage error for the first option of ``{flag: value}`` that is None: for options
    required except in one mode (``fit --show-recipe``)."""
    for flag, value in values.items():
        if value is None:
            ctx.fail(f"Missing option '{flag}'.")


def with_extra_paths(paths: list[str], ctx: typer.Context) -> list[str]:
    """--spectra's values plus the extra words the shell expanded a glob into."""
    extra = list(ctx.args)
    flags = [a for a in extra if a.startswith("-")]
    if flags:
        raise ApnetError(f"unknown option {flags[0]}")
    return list(paths) + extra


def int_list(text: str, flag: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2); ApnetError naming ``flag`` for anything else."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ApnetError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def float_triple(text: str, flag: str) -> tuple[float, float, float]:
    """``"teff,logg,fe_h"`` -> three floats; ApnetError naming ``flag`` for anything else."""
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ApnetError(f"{flag}: expected three comma-separated numbers (teff,logg,fe_h), "
                         f"got {text!r}")
    return values


def word_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ("a", "b", "c"): the non-empty comma-separated words."""
    return tuple(t.strip() for t in text.split(",") if t.strip())
