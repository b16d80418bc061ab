"""The published-networks page, followed as a new user would: its install line is the one
import-torch gives when PyTorch is missing, and its commands, run on stand-in weights in the
authors' layouts under the authors' file names, reach a Net I and a Net II catalog (and a
SavedModel) with no failed command, printing what the page shows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, cli
from transcripts import mismatch, parse_rules

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "published-networks.md"
#: The page's timings are of the project's machine; counts and the other words must match.
TIMINGS = parse_rules('<!-- transcript\n"done in # s": free  (timings)')


def test_the_page_and_the_error_give_the_same_install_line(monkeypatch, tmp_path):
    """import-torch without PyTorch used to say `pip install 'apnet-tf[torch]'` (the CUDA
    build on Linux), after TensorFlow had loaded; the page said nothing."""
    import importlib.util
    import sys

    from apnet_tf.constants import TORCH_CPU_INSTALL

    assert f"$ {TORCH_CPU_INSTALL}\n" in PAGE.read_text()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else find_spec(name, *a))
    res = cli("import-torch", tmp_path / "APOGEE_Net.pt", "--out", tmp_path / "run")
    assert assert_one_line_error(res, TORCH_CPU_INSTALL).endswith(TORCH_CPU_INSTALL)
    from apnet_tf.errors import ApnetError
    from apnet_tf.model import torch_files

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ApnetError, match=re.escape(TORCH_CPU_INSTALL)):
        torch_files.torch_module()


def page_steps() -> list[tuple[str, list[str]]]:
    """The page's `apnet-tf` commands (in ```text blocks) shown with what they print, each with
    the lines shown after it."""
    steps: list[tuple[str, list[str]]] = []
    block, pending = False, ""
    for line in PAGE.read_text().splitlines():
        if line.startswith("```"):
            block = line.strip() == "```text" if not block else False
            continue
        if not block:
            continue
        if pending or line.startswith("$ "):
            cmd = pending + (line[2:] if not pending else line.strip())
            pending = cmd[:-1].rstrip() + " " if cmd.endswith("\\") else ""
            if not pending:
                steps.append((cmd, []))
        elif steps and line.strip():
            steps[-1][1].append(line.rstrip())
    # a command shown without its output (a variant, on files the reader has) is not a step
    return [(cmd, lines) for cmd, lines in steps if cmd.startswith("apnet-tf ") and lines]


def _stand_ins(work: Path, apstar_files):
    """The files the page's commands name, made here: the authors' weight files (seeded
    stand-ins in their layouts, under their names: Net I's and II's .pt files, APOGEE Net III's
    and BOSS Net's chunk folders as a clone of their repository holds them), a folder of apStar
    files and an allStar table over the SAS layout, with Net II's photometry columns."""
    torch = pytest.importorskip("torch")
    ref = pytest.importorskip("published_reference")
    from astropy.table import Table
    from published_weights import photometry_for

    from apnet_tf.io.photometry import PHOT_COLUMNS

    torch.manual_seed(1)
    torch.save(ref.ApogeeNetI().state_dict(), work / "APOGEE_Net.pt")
    torch.manual_seed(2)
    torch.save(ref.ApogeeNetII().state_dict(), work / "model.pt")
    from test_bossnet_infer import write_chunks

    for arch, folder in (("anet3", "model_apogee"), ("bossnet", "model_boss")):
        write_chunks(arch, work / "BOSSNet" / "bossnet" / folder)
    (work / "my_apStar").mkdir()
    rows = {"APOGEE_ID": [], "TELESCOPE": [], "FIELD": [], "FILE": []}
    for i, f in enumerate(apstar_files):
        (work / "my_apStar" / f.name).symlink_to(f.resolve())
        field = f"FIELD{i % 3}"
        (work / "dr17" / "stars" / "apo25m" / field).mkdir(parents=True, exist_ok=True)
        (work / "dr17" / "stars" / "apo25m" / field / f.name).symlink_to(f.resolve())
        for key, value in zip(rows, (f.name[10:-5], "apo25m", field, f.name)):
            rows[key].append(value)
    phot = photometry_for(len(apstar_files))
    Table({**rows, **{c: phot[:, j] for j, c in enumerate(PHOT_COLUMNS)}}).write(
        work / "allStar-dr17-synspec_rev1.fits")


@pytest.mark.slow
def test_the_pages_commands_reach_a_net1_and_a_net2_catalog(apstar_files, tmp_path,
                                                            monkeypatch):
    from astropy.table import Table

    _stand_ins(tmp_path, apstar_files)
    monkeypatch.chdir(tmp_path)
    steps = page_steps()
    assert [c.split()[1] for c, _ in steps].count("infer") >= 2
    for command, shown in steps:
        res = cli(*command.split()[1:])
        assert res.exit_code == 0, f"$ {command}\n{res.output}"
        problem = mismatch(shown, res.output.splitlines(), TIMINGS)
        assert problem is None, f"$ {command}: {problem}\n{res.output}"
    for name, arch in (("anet1.fits", "anet1"), ("anet2.fits", "anet2")):
        cat = Table.read(tmp_path / name)
        assert len(cat) == len(apstar_files) and cat.meta["NETWORK"] == arch
        assert np.isfinite(np.asarray(cat["TEFF"], float)).all()
