"""DR17 at the measured speeds: the projected time for its 733,901 apStar files, plain and
``--mc 100``, on this machine, on one GPU node and on N nodes.

Nothing here is timed: the figures come from ``bench/results/survey.json`` (``survey.py --ray``:
the local and the Ray engine on 30,000 files, their Monte Carlo jobs, the CPU time per file of
reading, of the model and of the rest of a batch's work) and are written to
``bench/results/projection.json``. Each row says
whether it is measured (the results file and key) or an estimate, with its arithmetic. No GPU
was at hand: the GPU rate is a roofline estimate of the network on an H100 (its floating-point
operations and memory traffic per spectrum, counted here from the architecture, against a stated
fraction of the card's peak), not a measurement.

APOGEE Net III and BOSS Net at DR19's scale (``--dr19-spectra`` spectra per network, a round
number: astra analysed DR17's APOGEE files and SDSS-V's APOGEE and BOSS spectra besides, and
the hours scale with the count): the rates of ``bench/results/published_bossnet.json``
against the authors' PyTorch measured in the same run, the bfloat16 rate of
``precision_bossnet.json`` against float32, and GPU rows as estimates (the same roofline,
counted from the Keras model's layers, and the CPU time of reading the files, measured here).

    python bench/projection.py [--nodes 4 16 64] [--node-cores 16] [--gpu-efficiency 0.25]
        [--dr19-spectra 1000000] [--gpu-batch 256]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import RESULTS, add_tag, report  # noqa: E402

from apnet_tf.constants import (  # noqa: E402
    CONV_FILTERS,
    CONV_KERNEL,
    DENSE_UNITS,
    MC_DRAWS,
    N_PIXELS,
)

#: apStar files of SDSS DR17 (allStar-dr17-synspec_rev1: one row per file).
DR17_FILES = 733_901
#: H100 SXM: FP32 peak (no tensor cores) and memory bandwidth, from NVIDIA's data sheet.
H100_FLOPS = 67e12
H100_BYTES_PER_S = 3.35e12
FLOAT = 4  # bytes


def network_cost() -> tuple[float, float]:
    """(floating-point operations, bytes of activations read and written) per spectrum of the
    Appendix B network (Net I and II cost the same within 1%): each convolution reads its input
    and writes its output (bias and ReLU fused), each pooling reads and writes, then the dense
    layers."""
    length, c_in, flops, moved = N_PIXELS, 1, 0.0, 0.0
    for i, c_out in enumerate(CONV_FILTERS, start=1):
        flops += 2 * length * c_out * c_in * CONV_KERNEL
        moved += FLOAT * length * (c_in + c_out)
        c_in = c_out
        if i % 2 == 0:
            moved += FLOAT * (length * c_out + (length // 2) * c_out)
            length //= 2
    dense = [(length * c_in, DENSE_UNITS), (DENSE_UNITS, DENSE_UNITS), (DENSE_UNITS, 3)]
    flops += sum(2 * a * b for a, b in dense)
    moved += FLOAT * sum(a + b for a, b in dense)
    return flops, moved


def _hours(files_per_s: float, extra_s: float = 0.0) -> float:
    return (DR17_FILES / files_per_s + extra_s) / 3600


def _row(where, mode, rate, basis, how, extra_s=0.0) -> dict:
    return {"where": where, "mode": mode, "files_per_s": rate, "hours": _hours(rate, extra_s),
            "basis": basis, "how": how}


def measured_rows(ray: dict, src: str) -> list[dict]:
    """This machine, from the survey results' ``ray`` figures."""
    n = f"{ray['files']:,} files ({ray['distinct_files']:,} distinct)"
    return [
        _row("this machine (2 cores), local engine", "plain", ray["local_files_per_s"],
             "measured", f"{src} ray.local_files_per_s, a job on {n}"),
        _row("this machine (2 cores), `--engine ray`", "plain", ray["ray_files_per_s"],
             "measured", f"{src} ray.ray_files_per_s on {n}, plus Ray's start-up "
             f"(ray.ray_init_s = {ray['ray_init_s']:.1f} s)", ray["ray_init_s"]),
        _row("this machine (2 cores), local engine", "`--mc 100`",
             ray["local_mc100_stars_per_s"], "measured",
             f"{src} ray.local_mc100_stars_per_s"),
        _row("this machine (2 cores), `--engine ray`", "`--mc 100`",
             ray["ray_mc100_stars_per_s"], "measured",
             f"{src} ray.ray_mc100_stars_per_s, a 256-star job whose fixed cost (actor start, "
             "model loading) a survey-long job would spread thin: an upper bound; plus "
             "ray.ray_init_s", ray["ray_init_s"])]


def gpu_rows(cpu: dict, fixed_s: float, cores: int, efficiency: float,
             nodes: list[int]) -> list[dict]:
    """One node (one GPU, one model actor, ``cores`` CPU cores) and N of them: estimates from
    the CPU time per file measured here (survey.json ``cpu_ms_per_file``), plus ``fixed_s``,
    the fixed cost of a Ray job measured here (Ray's start-up and a one-batch job)."""
    flops, moved = network_cost()
    gpu = efficiency * min(H100_FLOPS / flops, H100_BYTES_PER_S / moved)
    read = (cores - 1) * 1e3 / cpu["read"]
    actor = 1e3 / (cpu["unit_part"] - cpu["model"])
    how = (f"GPU: H100 roofline, min({H100_FLOPS / 1e12:.0f} TFLOP/s / {flops / 1e6:.1f} "
           f"MFLOP, {H100_BYTES_PER_S / 1e12:.2f} TB/s / {moved / 1e6:.2f} MB) x {efficiency} "
           f"(assumed, not measured) = {gpu:,.0f} spectra/s; reading: {cores - 1} cores / "
           f"{cpu['read']:.2f} ms = {read:,.0f} files/s; the actor's own CPU work (flags, "
           f"catalog columns, one core): 1 / ({cpu['unit_part']:.2f} - {cpu['model']:.2f}) ms "
           f"= {actor:,.0f} files/s (cpu_ms_per_file); plus {fixed_s:.0f} s of fixed cost "
           "(Ray's start-up and a one-batch job, measured here)")
    r = MC_DRAWS
    plain, mc = min(gpu, read, actor), min(gpu / r, read, actor)
    node = f"one GPU node (1 H100, {cores} cores)"
    rows = [_row(node, "plain", plain, "estimate", f"min(GPU, reading, actor); {how}", fixed_s),
            _row(node, "`--mc 100`", mc, "estimate", f"min(GPU / {r}, reading, actor) = "
                 f"min({gpu / r:,.0f}, {read:,.0f}, {actor:,.0f}), plus the fixed cost",
                 fixed_s)]
    size = FLOAT * 3 * N_PIXELS  # row 0 of HDUs 1-3: flux, error, mask, at least
    for n in nodes:
        for mode, rate in (("plain", plain), ("`--mc 100`", mc)):
            rows.append(_row(f"{n} GPU nodes", mode, n * rate, "estimate",
                             f"{n} x the one-node rate (linear), plus the fixed cost; the shared "
                             f"file system must serve {n * rate * size / 1e9:.2f} GB/s (at least "
                             f"{size / 1e3:.0f} kB read per file) and {n * rate:,.0f} file "
                             "opens/s", fixed_s))
    return rows


def bossnet_cost(arch: str, batch: int) -> tuple[float, float]:
    """(floating-point operations, bytes read and written) per spectrum of APOGEE Net III or
    BOSS Net, counted from the Keras model's layers: each convolution 2 x output length x
    filters x input channels x kernel, each Linear 2 x inputs x units; every one-input layer
    reads its input and writes its output (nothing fused), and the weights are read once per
    batch of ``batch`` spectra."""
    from apnet_tf.model.bossnet import build_bossnet

    model = build_bossnet(arch)
    flops, moved = 0.0, 0.0
    for layer in model.layers:
        if not layer._inbound_nodes or isinstance(layer.input, list):
            continue
        shape_in, shape_out = layer.input.shape, layer.output.shape
        moved += FLOAT * (math.prod(shape_in[1:]) + math.prod(shape_out[1:]))
        if layer.__class__.__name__ == "Conv1D":
            flops += 2 * shape_out[1] * layer.filters * shape_in[2] * layer.kernel_size[0]
        elif layer.__class__.__name__ == "Dense":
            flops += 2 * shape_in[1] * layer.units
    return flops, moved + FLOAT * model.count_params() / batch


def dr19_rows(pub: dict, prec: dict, n: int, cores: int, efficiency: float, batch: int,
              nodes: list[int]) -> list[dict]:
    """APOGEE Net III and BOSS Net on ``n`` spectra each: measured here (bench/results/
    published_bossnet.json, precision_bossnet.json) against the authors' PyTorch in the same
    run; one GPU node and N nodes as estimates."""
    def h(rate: float) -> float:
        return n / rate / 3600

    rows = []
    for arch in ("anet3", "bossnet"):
        a, p = pub["figures"].get(arch), prec["figures"].get(arch)
        if a is None or p is None:
            continue
        mc = a["mc"]

        def row(where, mode, rate, ref_what, ref_rate, basis, how):
            return {"arch": arch, "where": where, "mode": mode, "spectra_per_s": rate,
                    "hours": h(rate), "reference": ref_what, "reference_spectra_per_s": ref_rate,
                    "reference_hours": None if ref_rate is None else h(ref_rate),
                    "ratio": None if ref_rate is None else rate / ref_rate, "basis": basis,
                    "how": how}

        here = f"this machine ({pub['machine'].split(', ')[-1]})"
        rows += [
            row(here, "plain", a["plain_spectra_per_s"], "the authors' PyTorch",
                a["torch_plain_spectra_per_s"], "measured", "published_bossnet.json "
                f"{arch}.plain_spectra_per_s and torch_plain_spectra_per_s (the network on "
                f"in-memory spectra, {a['stars_per_call']} per call; reading not included)"),
            row(here, f"`--mc {mc}` (astra's)", a["mc_stars_per_s"], "the authors' PyTorch loop",
                a["torch_mc_stars_per_s"], "measured", "published_bossnet.json "
                f"{arch}.mc_stars_per_s and torch_mc_stars_per_s ({a['mc_stars_per_call']} "
                "stars per call)"),
            row(here, "plain, `--precision mixed_bfloat16`", p["bfloat16_spectra_per_s"],
                "float32, same run", p["float32_spectra_per_s"], "measured",
                f"precision_bossnet.json {arch}, {p['stars_per_call']} per call; what `auto` "
                f"chose here: `{p['auto'].split(' (')[0]}`")]
        flops, moved = bossnet_cost(arch, batch)
        gpu = efficiency * min(H100_FLOPS / flops, H100_BYTES_PER_S / moved)
        read = (cores - 1) * 1e3 / p["read_cpu_ms_per_file"]
        how = (f"GPU: H100 roofline, min({H100_FLOPS / 1e12:.0f} TFLOP/s / "
               f"{flops / 1e9:.2f} GFLOP, {H100_BYTES_PER_S / 1e12:.2f} TB/s / "
               f"{moved / 1e6:.1f} MB (activations, unfused, and the weights once per batch "
               f"of {batch})) x {efficiency} (assumed, not measured) = {gpu:,.0f} spectra/s; "
               f"reading: {cores - 1} cores / {p['read_cpu_ms_per_file']:.2f} ms "
               f"(precision_bossnet.json {arch}.read_cpu_ms_per_file, measured here) = "
               f"{read:,.0f} files/s")
        node = f"one GPU node (1 H100, {cores} cores)"
        plain, draws = min(gpu, read), min(gpu / (mc + 1), read)
        rows += [row(node, "plain", plain, None, None, "estimate",
                     f"min(GPU, reading); {how}"),
                 row(node, f"`--mc {mc}` (astra's)", draws, None, None, "estimate",
                     f"min(GPU / {mc + 1} passes (the un-noised one and {mc} draws), reading) "
                     f"= min({gpu / (mc + 1):,.0f}, {read:,.0f})")]
        for k in nodes:
            rows.append(row(f"{k} GPU nodes", f"`--mc {mc}` (astra's)", k * draws, None, None,
                            "estimate", f"{k} x the one-node rate (linear)"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="*", default=[4, 16, 64])
    ap.add_argument("--node-cores", type=int, default=16)
    ap.add_argument("--gpu-efficiency", type=float, default=0.25,
                    help="assumed fraction of the H100 roofline the network reaches")
    ap.add_argument("--survey", default="survey", help="the results file to read, "
                    "bench/results/NAME.json")
    ap.add_argument("--dr19-spectra", type=int, default=1_000_000,
                    help="spectra per network of the APOGEE Net III and BOSS Net rows")
    ap.add_argument("--gpu-batch", type=int, default=256,
                    help="batch of the GPU estimate (the weights are read once per batch)")
    add_tag(ap)
    args = ap.parse_args()
    with open(os.path.join(RESULTS, f"{args.survey}.json")) as f:
        survey = json.load(f)
    ray = survey["figures"].get("ray")
    if ray is None:
        raise SystemExit(f"bench/results/{args.survey}.json has no ray figures: run "
                         "python bench/survey.py --ray first")
    rows = (measured_rows(ray, f"{args.survey}.json")
            + gpu_rows(survey["figures"]["cpu_ms_per_file"],
                       ray["ray_init_s"] + ray["ray_one_batch_job_s"], args.node_cores,
                       args.gpu_efficiency, args.nodes))
    figures = {"dr17_files": DR17_FILES, "survey": f"{args.survey}.json",
               "survey_commit": survey["commit"], "survey_date": survey["date"], "rows": rows}
    pub, prec = (os.path.join(RESULTS, f"{name}.json")
                 for name in ("published_bossnet", "precision_bossnet"))
    if os.path.exists(pub) and os.path.exists(prec):
        with open(pub) as f, open(prec) as g:
            pub, prec = json.load(f), json.load(g)
        figures["dr19"] = {
            "spectra": args.dr19_spectra, "gpu_batch": args.gpu_batch,
            "sources": {k: {"commit": r["commit"], "date": r["date"],
                            "load_average_1min_at_end": r.get("load_average_1min_at_end")}
                        for k, r in (("published_bossnet", pub), ("precision_bossnet", prec))},
            "rows": dr19_rows(pub, prec, args.dr19_spectra, args.node_cores,
                              args.gpu_efficiency, args.gpu_batch, args.nodes)}
    report("projection", figures, args.tag)


if __name__ == "__main__":
    main()
