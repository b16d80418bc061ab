"""How much the numbers of the README's and the guide's transcripts move between runs that compute
differently: the evidence behind each block's stated tolerances (``transcripts.py``).

A network trained for two epochs on another machine differs in more than its last digits: other
kernels sum in another order, and a machine without bfloat16 hardware trains in float32
(``--precision auto``). This script runs the pages' ```console blocks in a fresh folder under
each setting and writes what every command printed; ``compare`` then lists, for every output line
whose numbers differ between the runs, the largest relative and absolute difference from the
first run, which is the run the pages show.

    python tests/transcript_spread.py run README.md,docs/worked-example.md base.json
    TF_ENABLE_ONEDNN_OPTS=0 python tests/transcript_spread.py run ... noonednn.json
    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 python tests/transcript_spread.py run ...
    python tests/transcript_spread.py run --no-bf16 ... nobf16.json
    python tests/transcript_spread.py compare base.json noonednn.json onethread.json nobf16.json

It is not a test (a run of both pages takes 10 to 30 minutes on 2 cores).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from transcripts import NUMBER, environment, transcript, workspace

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
#: Put first on PYTHONPATH by --no-bf16: /proc/cpuinfo read without the bfloat16 flags, so that
#: --precision auto takes float32, as on a machine without bfloat16 hardware.
_NO_BF16 = '''import builtins, io
_open = builtins.open
def _patched(file, *args, **kwargs):
    if file == "/proc/cpuinfo":
        with _open(file, *args, **kwargs) as f:
            return io.StringIO(f.read().replace("avx512_bf16", "").replace("amx_bf16", ""))
    return _open(file, *args, **kwargs)
builtins.open = _patched
'''


def run(pages: list[str], out: str, no_bf16: bool = False) -> None:
    """Run every console step of ``pages`` in order in one fresh folder; write each step's
    page, line, command, exit status and output lines to ``out`` (JSON)."""
    tmp = Path(tempfile.mkdtemp(prefix="transcript-spread-"))
    work, env = workspace(tmp, REPO, SHARED), environment(tmp, REPO)
    if no_bf16:
        (tmp / "site").mkdir()
        (tmp / "site" / "sitecustomize.py").write_text(_NO_BF16)
        env["PYTHONPATH"] = f"{tmp / 'site'}:{env['PYTHONPATH']}"
    steps = []
    for page in pages:
        for step in transcript((REPO / page).read_text(), page):
            res = subprocess.run(["bash", "-c", step.command], cwd=work, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800)
            steps.append({"page": page, "line": step.line, "command": step.command,
                          "exit": res.returncode, "output": res.stdout.splitlines()})
            print(page, step.line, res.returncode, flush=True)
    Path(out).write_text(json.dumps(steps, indent=1))


def _numbers(line: str) -> tuple[str, list[float]]:
    """A line's words (numbers replaced by #) and its numbers."""
    found = re.findall(NUMBER, line.strip(), re.IGNORECASE)
    shape = re.sub(NUMBER, "#", " ".join(line.split()), flags=re.IGNORECASE)
    return shape, [float(x) for x in found]


def _occurrences(lines: list[str]) -> dict[tuple[str, int], list[float]]:
    """(shape, n) -> the numbers of the n-th line of that shape, for the non-blank lines."""
    out, seen = {}, {}
    for line in lines:
        if line.strip():
            shape, values = _numbers(line)
            seen[shape] = seen.get(shape, -1) + 1
            out[(shape, seen[shape])] = values
    return out


def compare(base: str, others: list[str]) -> None:
    """Print, for each line of ``base`` whose numbers differ in some run of ``others``, the
    largest |difference| / |value| and |difference| over its numbers, then the line; and each
    line that another run did not print at all."""
    runs = [json.loads(Path(p).read_text()) for p in [base, *others]]
    for k, step in enumerate(runs[0]):
        where = f"{step['page']}:{step['line']}"
        theirs = [_occurrences(r[k]["output"]) for r in runs[1:]]
        for key, values in _occurrences(step["output"]).items():
            rel = diff = 0.0
            for other in theirs:
                if key not in other:
                    print(f"{where}: not in every run: {key[0]}")
                    continue
                for want, got in zip(values, other[key]):
                    diff = max(diff, abs(got - want))
                    rel = max(rel, abs(got - want) / abs(want) if want else float("inf"))
            if diff:
                print(f"{where}: rel {rel:.3g} abs {diff:.3g}  {key[0]}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        flag = "--no-bf16" in args
        rest = [a for a in args[1:] if a != "--no-bf16"]
        run(rest[0].split(","), rest[1], no_bf16=flag)
    elif args[:1] == ["compare"]:
        compare(args[1], args[2:])
    else:
        sys.exit(__doc__)
