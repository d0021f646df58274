"""Runs the ±SSL ablation end to end, resumably (see README.md here for the protocol).

    python experiments/ssl_ablation/run.py [--seeds 0,1] [--pretrain_steps 1000] [--gan_steps 400]
        [--batch_size 4] [--workdir DIR] [--data_root ../shared/data]

Stages, each skipped when already done (rerun the same command to continue after an interruption;
training resumes from its last checkpoint):
  1. L1 pretraining (once, shared by every seed and arm)
  2. for each seed: baseline and SSL GAN runs from that initialisation
  3. evaluation of each run's EMA generator, and of the shared L1 initialisation for reference, on
     Set5, Set14, Urban100 (PSNR-Y, SSIM-Y, LPIPS-Alex)
  4. paired statistics, RESULTS.md and comparison crops in this folder
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys

from absl import app, flags

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import config as ablation_config  # noqa: E402  (this folder's config pair)

flags.DEFINE_string("workdir", "", "where checkpoints and evaluations go; default "
                    "workdirs/ssl_ablation_p<pretrain_steps>_g<gan_steps>_b<batch_size>, one per budget, because "
                    "learning-rate milestones and the EMA decay depend on it")
flags.DEFINE_string("data_root", ablation_config.SHARED, "folder holding T91/, Set5/, Set14/, Urban100/")
flags.DEFINE_list("seeds", ["0", "1"], "GAN-stage seeds (both arms share each)")
flags.DEFINE_list("datasets", ["Set5", "Set14", "Urban100"], "evaluation sets")
flags.DEFINE_integer("pretrain_steps", 1000, "L1 pretraining steps")
flags.DEFINE_integer("gan_steps", 400, "GAN steps per arm and seed")
flags.DEFINE_integer("batch_size", 4, "GAN-stage batch size (the L1 pretraining always uses 8)")
flags.DEFINE_string("results", str(HERE / "RESULTS.md"), "the report to write")
flags.DEFINE_bool("ema", True, "evaluate the EMA generators (the protocol); --noema evaluates the raw G, e.g. for "
                  "a secondary look at the same runs")
FLAGS = flags.FLAGS

ARMS = ("baseline", "ssl")
METRICS = ("psnr", "ssim", "lpips")


def _config(arm: str, seed: int = 0):
    c = ablation_config.get_config(arm, pretrain_steps=FLAGS.pretrain_steps, gan_steps=FLAGS.gan_steps, seed=seed,
                                   batch_size=FLAGS.batch_size)
    c.data.train = os.path.join(FLAGS.data_root, "T91", "HR")
    return c


def _train(config, workdir: pathlib.Path) -> None:
    from sslsr.train import train_and_evaluate

    train_and_evaluate(config, str(workdir))


def _steps_per_second(workdir: pathlib.Path) -> float:
    """Median steps/s over the logged windows of the GAN stage (compile-free windows only)."""
    from sslsr.train.loop import METRICS_FILE

    records = [json.loads(line) for line in (workdir / METRICS_FILE).read_text().splitlines() if line.strip()]
    rates = [r["steps_per_s"] for r in records if "steps_per_s" in r]
    rates = sorted(rates[1:]) or sorted(rates)  # the first window includes compilation
    return rates[len(rates) // 2] if rates else math.nan


def _evaluate(run: pathlib.Path, arm: str, out: pathlib.Path, steps: int) -> dict:
    done = out / "results.json"
    marker = out / "steps.txt"
    if done.exists() and marker.exists() and marker.read_text().strip() == str(steps):
        return json.loads(done.read_text())
    from sslsr.evaluate import evaluate
    from sslsr.train import restore_generator

    g = restore_generator(str(run), prefer_ema=FLAGS.ema)
    results = evaluate(g, FLAGS.datasets, scale=4, out_dir=out, data_root=FLAGS.data_root, metrics=METRICS,
                       model_name=arm, num_comparisons=0)
    marker.write_text(str(steps))
    return results


def _eval_dir(workdir: pathlib.Path, seed: int, arm: str) -> pathlib.Path:
    return workdir / "eval" / f"seed{seed}_{arm}{'' if FLAGS.ema else '_raw_g'}"


def _per_image(results: dict, method: str) -> dict[tuple[str, str], dict]:
    return {(r["dataset"], r["image"]): r for r in results["per_image"] if r["method"] == method}


def _interval(diffs) -> tuple[float, float, float]:
    """Mean and 95% t-interval of paired differences."""
    import numpy as np
    from scipy import stats

    d = np.asarray(diffs, np.float64)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


def _fmt_interval(mean: float, lo: float, hi: float) -> str:
    return f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def _report(evals: dict[tuple[int, str], dict], rates: dict[tuple[int, str], float], workdir: pathlib.Path,
            init_eval: dict) -> str:
    import numpy as np

    seeds = sorted({s for s, _ in evals})
    keys = sorted(_per_image(evals[(seeds[0], "baseline")], "baseline"))
    # Per image, per metric: value of each arm averaged over seeds.
    arm_vals = {arm: {m: np.array([[_per_image(evals[(s, arm)], arm)[k][m] for k in keys] for s in seeds]).mean(0)
                      for m in METRICS} for arm in ARMS}
    datasets = [d for d in FLAGS.datasets if any(k[0] == d for k in keys)]
    lines = [
        "# ±SSL ablation: results",
        "",
        f"Command: `python experiments/ssl_ablation/run.py --seeds {','.join(map(str, seeds))} "
        f"--pretrain_steps {FLAGS.pretrain_steps} --gan_steps {FLAGS.gan_steps} --batch_size {FLAGS.batch_size}"
        f"{'' if FLAGS.ema else ' --noema'}"
        f"{'' if FLAGS.results.endswith('/RESULTS.md') else ' --results ' + pathlib.Path(FLAGS.results).name}`",
        "",
        f"MSRResNet (32 feat, 6 blocks) x4 on T91, {FLAGS.pretrain_steps} L1 steps then {FLAGS.gan_steps} GAN steps "
        f"per arm (batch {FLAGS.batch_size}), 128 px HR patches, seeds {seeds}; "
        f"{f'EMA generators (decay {ablation_config.gan_ema_decay(FLAGS.gan_steps):g})' if FLAGS.ema else 'raw generators (no EMA)'}. "
        "Perceptual term: VGG16 conv5_3 (VGG19 is not available offline). Values are means over images of the "
        "per-seed average.",
        "",
        "| set | images | PSNR-Y base | PSNR-Y SSL | SSIM-Y base | SSIM-Y SSL | LPIPS base | LPIPS SSL | ΔLPIPS (95% CI) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    idx = {d: [i for i, k in enumerate(keys) if k[0] == d] for d in datasets}
    lower_everywhere = True
    for d in datasets + ["all"]:
        sel = list(range(len(keys))) if d == "all" else idx[d]
        b = {m: arm_vals["baseline"][m][sel] for m in METRICS}
        s = {m: arm_vals["ssl"][m][sel] for m in METRICS}
        mean, lo, hi = _interval(s["lpips"] - b["lpips"])
        if d != "all":
            lower_everywhere &= bool(s["lpips"].mean() < b["lpips"].mean())
        lines.append(f"| {d} | {len(sel)} | {b['psnr'].mean():.3f} | {s['psnr'].mean():.3f} | {b['ssim'].mean():.4f} | "
                     f"{s['ssim'].mean():.4f} | {b['lpips'].mean():.4f} | {s['lpips'].mean():.4f} | "
                     f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    all_idx = list(range(len(keys)))
    mean, lo, hi = _interval(arm_vals["ssl"]["lpips"][all_idx] - arm_vals["baseline"]["lpips"][all_idx])
    if lower_everywhere and hi < 0:
        verdict = "**agrees with the paper** (LPIPS lower with SSL on every set and the interval excludes 0)"
    elif lo > 0:
        verdict = "**contradicts the paper** (SSL's LPIPS is higher; the interval excludes 0)"
    else:
        verdict = "**inconclusive** (the pre-registered criteria are not met in either direction)"
    lines += ["", f"Verdict by the criteria fixed in README.md: {verdict}.", ""]
    for seed in seeds:  # does each seed alone point the same way?
        d = {m: np.array([_per_image(evals[(seed, "ssl")], "ssl")[k][m] - _per_image(evals[(seed, "baseline")],
                                                                                     "baseline")[k][m] for k in keys])
             for m in METRICS}
        cells = [f"Δ{m.upper()}{'-Y' if m != 'lpips' else ''} {_fmt_interval(*_interval(d[m]))}" for m in METRICS]
        lines.append(f"- Seed {seed} alone, all images: " + ", ".join(cells))
    for m, unit in (("psnr", "dB"), ("ssim", "")):
        mm, ml, mh = _interval(arm_vals["ssl"][m] - arm_vals["baseline"][m])
        lines.append(f"- Δ{m.upper()}-Y (SSL − baseline) over all images: {mm:+.4f}{' ' + unit if unit else ''} "
                     f"[{ml:+.4f}, {mh:+.4f}]")
    base_rate = np.nanmean([rates[(s, "baseline")] for s in seeds])
    ssl_rate = np.nanmean([rates[(s, "ssl")] for s in seeds])
    lines.append(f"- Training speed on this machine: baseline {base_rate:.3f} it/s, SSL {ssl_rate:.3f} it/s "
                 f"(SSL adds {100 * (base_rate / ssl_rate - 1):.0f}% per step).")
    init = _per_image(init_eval, "l1_init")
    lines += ["", "Reference, the shared L1 initialisation both arms start from: "
              + "; ".join(f"{d} PSNR-Y {np.mean([init[k]['psnr'] for k in keys if k[0] == d]):.3f}, "
                          f"SSIM-Y {np.mean([init[k]['ssim'] for k in keys if k[0] == d]):.4f}, "
                          f"LPIPS {np.mean([init[k]['lpips'] for k in keys if k[0] == d]):.4f}" for d in datasets) + "."]
    # Table 1 compares converged GANs, whose LPIPS is far below their PSNR-oriented initialisation.
    init_lpips = np.array([init[k]["lpips"] for k in keys])
    gan_gain = {arm: _interval(arm_vals[arm]["lpips"] - init_lpips) for arm in ARMS}
    reached = gan_gain["baseline"][2] < 0
    lines += ["", "GAN stage vs. that initialisation, LPIPS over all images: "
              + "; ".join(f"{arm} {_fmt_interval(*gan_gain[arm])}" for arm in ARMS)
              + (". The baseline GAN already improves on its L1 initialisation, the regime the paper's claim is about."
                 if reached else
                 ". **The baseline GAN does not yet improve LPIPS over its L1 initialisation**: the run is still in "
                 "the early phase of GAN training, not in the regime of the paper's claim (converged GANs).")]
    lines += ["", "## Per-image paired differences (SSL − baseline, mean over seeds)", "",
              "| set | image | ΔPSNR-Y | ΔSSIM-Y | ΔLPIPS |", "|---|---|---|---|---|"]
    for i, k in enumerate(keys):
        lines.append(f"| {k[0]} | {k[1]} | {arm_vals['ssl']['psnr'][i] - arm_vals['baseline']['psnr'][i]:+.3f} | "
                     f"{arm_vals['ssl']['ssim'][i] - arm_vals['baseline']['ssim'][i]:+.4f} | "
                     f"{arm_vals['ssl']['lpips'][i] - arm_vals['baseline']['lpips'][i]:+.4f} |")
    lines += ["", "## Comparison crops (baseline | SSL | HR, seed " + str(seeds[0]) + ")", ""]
    lines += _crops(evals, seeds[0], keys, arm_vals, workdir)
    return "\n".join(lines) + "\n"


def _crops(evals, seed, keys, arm_vals, workdir: pathlib.Path) -> list[str]:
    """Crops where SSL helps and hurts LPIPS most, chosen by local luma error like eval's comparisons."""
    import numpy as np

    from sslsr.data.datasets import iterate_eval_pairs
    from sslsr.data.io import read_image, write_png
    from sslsr.evaluate import comparison_strip

    delta = arm_vals["ssl"]["lpips"] - arm_vals["baseline"]["lpips"]
    order = np.argsort(delta)
    picks = [(keys[i], "gain") for i in order[:3]] + [(keys[i], "loss") for i in order[-2:]]
    report = pathlib.Path(FLAGS.results).resolve()
    report_dir = report.parent
    out_dir = report_dir / ("crops" + report.stem.removeprefix("RESULTS"))  # one folder per report
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    hr_by_key = {}
    for ds in {k[0] for k, _ in picks}:
        wanted = {k[1] for k, _ in picks if k[0] == ds}
        for name, _, hr in iterate_eval_pairs(os.path.join(FLAGS.data_root, ds), scale=4):
            if name in wanted:
                hr_by_key[(ds, name)] = hr
    for key, tag in picks:
        base = read_image(_eval_dir(workdir, seed, "baseline") / key[0] / f"{key[1]}.png")
        ssl = read_image(_eval_dir(workdir, seed, "ssl") / key[0] / f"{key[1]}.png")
        strip = comparison_strip(base, ssl, hr_by_key[key], crop=96, gain=tag == "gain")
        path = out_dir / f"{key[0]}_{key[1]}_{tag}.png"
        write_png(path, strip)
        lines.append(f"- {key[0]} {key[1]} (ΔLPIPS {delta[keys.index(key)]:+.4f}): ![]({path.relative_to(report_dir)})")
    return lines


def main(argv):
    del argv
    # Every run evaluates the same architecture on the same 69 image shapes: compile each shape once.
    import jax

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(HERE.parents[1] / ".jax_cache"))
    workdir = pathlib.Path(FLAGS.workdir or f"workdirs/ssl_ablation_p{FLAGS.pretrain_steps}_g{FLAGS.gan_steps}"
                                            f"_b{FLAGS.batch_size}").resolve()
    seeds = [int(s) for s in FLAGS.seeds]
    pre = workdir / "pretrain"
    _train(_config("pretrain"), pre)
    evals, rates = {}, {}
    for seed in seeds:
        for arm in ARMS:
            c = _config(arm, seed)
            c.generator.init_from = str(pre)
            c.generator.init_key = "params"
            run = workdir / f"seed{seed}_{arm}"
            _train(c, run)
            rates[(seed, arm)] = _steps_per_second(run)
    for seed in seeds:
        for arm in ARMS:
            evals[(seed, arm)] = _evaluate(workdir / f"seed{seed}_{arm}", arm, _eval_dir(workdir, seed, arm),
                                           FLAGS.gan_steps)
    init_eval = _evaluate(pre, "l1_init", workdir / "eval" / "l1_init", FLAGS.pretrain_steps)
    pathlib.Path(FLAGS.results).write_text(_report(evals, rates, workdir, init_eval))
    print(f"wrote {FLAGS.results}")


if __name__ == "__main__":
    app.run(main)
