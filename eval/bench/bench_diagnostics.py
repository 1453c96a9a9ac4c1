"""Overhead of the stability diagnostics (ssl_vit/diagnostics) as a share of the training step time.

Target (issue 4): <= 5 % at the default interval (``log.diag_every=50``). Two runs of the same recipe:

* **base** -- ``diag.enabled=false``: the loop alone; a clock hook gives each step's wall time.
* **diag** -- the default diagnostic hooks, each wrapped in a timer, at a short interval
  (``--measure-every``, default 10) so that several diagnostic steps are measured.

From them: ``c_norm`` (hook time on an ordinary step: the spike detector on loss + total norm),
``c_diag`` (hook time on a diagnostic step: grad norms, update ratios, RankMe, token diversity,
attention entropy), and ``d_diag`` (the extra wall time of a diagnostic step measured by the clock,
which also covers the in-forward captures and the frozen projection's gradient). The overhead at
interval k is ``((k - 1) * c_norm + d_diag) / (k * t_step)``. The online kNN monitor is timed separately
(one check on ``log.knn_subset`` images, amortised over ``log.knn_every`` steps).

Example (CPU, ~3 CPU-minutes)::

    nice -n 5 .venv/bin/python eval/bench/bench_diagnostics.py --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

from ssl_vit.config import apply_overrides, load_config  # noqa: E402
from ssl_vit.engine.hooks import Hook  # noqa: E402


class Clock(Hook):
    """Wall time of each step, between consecutive after_step calls (everything in between counts)."""

    name = "bench_clock"

    def __init__(self):
        self.t, self.steps = [], []

    def on_start(self, run):
        self.t.append(time.perf_counter())

    def after_step(self, run, step):
        self.t.append(time.perf_counter())
        self.steps.append(step)

    def durations(self):
        return dict(zip(self.steps, [b - a for a, b in zip(self.t, self.t[1:])]))


class Timed(Hook):
    """Forwards to ``inner`` and adds up the time spent in it, per step."""

    def __init__(self, inner, per_step):
        self.inner, self.name, self.per_step = inner, inner.name, per_step

    def _t(self, step, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        self.per_step[step] = self.per_step.get(step, 0.0) + time.perf_counter() - t0
        return out

    def on_start(self, run):
        return self._t(-1, self.inner.on_start, run)

    def after_backward(self, run, step):
        return self._t(step, self.inner.after_backward, run, step)

    def after_step(self, run, step):
        return self._t(step, self.inner.after_step, run, step)

    def on_end(self, run):
        return self._t(-2, self.inner.on_end, run)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="fmnist_vit_tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--measure-every", type=int, default=10, help="diag interval of the measuring run")
    ap.add_argument("--skip", type=int, default=5, help="first steps left out (warm-up)")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args(argv)

    from ssl_vit.diagnostics import KnnMonitorHook, default_hooks
    from ssl_vit.runs import pretrain

    base_sets = [
        f"train.max_steps={a.steps}",
        "eval.final_knn=false",
        "log.progress=false",
        "log.knn_every=0",
        "train.checkpoint_every=0",
        *a.sets,
    ]
    cfg = load_config(a.recipe, base_sets)
    default_every = load_config(a.recipe).log.diag_every
    knn_every, knn_subset = load_config(a.recipe).log.knn_every, cfg.log.knn_subset
    with tempfile.TemporaryDirectory() as tmp:
        base_clock = Clock()
        pretrain(
            apply_overrides(cfg, ["diag.enabled=false"]), Path(tmp) / "base", hooks=[base_clock], log=lambda m: None
        )
        clock, per_step = Clock(), {}
        on = apply_overrides(cfg, [f"log.diag_every={a.measure_every}"])
        timed = [Timed(h, per_step) for h in default_hooks(on)]
        knn_hook = next(t.inner for t in timed if isinstance(t.inner, KnnMonitorHook))
        knn_t = {}

        class KnnOnce(Hook):  # one online kNN check on the trained model, timed
            name = "bench_knn"

            def on_end(self, run):
                t0 = time.perf_counter()
                knn_t["top1"] = knn_hook.measure(run)
                knn_t["s"] = time.perf_counter() - t0

        pretrain(
            apply_overrides(on, ["diag.enabled=false"]),
            Path(tmp) / "diag",
            hooks=[clock, *timed, KnnOnce()],
            log=lambda m: None,
        )

    k = a.measure_every
    is_diag = lambda s: (s + 1) % k == 0 or s + 1 == a.steps  # noqa: E731
    base = [d for s, d in base_clock.durations().items() if s >= a.skip]
    dur = {s: d for s, d in clock.durations().items() if s >= a.skip}
    t_step = statistics.median(base)
    norm_steps = [s for s in dur if not is_diag(s)]
    diag_steps = [s for s in dur if is_diag(s)]
    c_norm = statistics.mean(per_step.get(s, 0.0) for s in norm_steps)
    c_diag = statistics.mean(per_step.get(s, 0.0) for s in diag_steps)
    d_diag = statistics.mean(dur[s] for s in diag_steps) - statistics.median(dur[s] for s in norm_steps)

    def overhead(every, extra):
        return ((every - 1) * c_norm + extra) / (every * t_step)

    res = {
        "recipe": a.recipe,
        "sets": a.sets,
        "steps": a.steps,
        "batch_size": cfg.train.batch_size,
        "threads": cfg.train.threads or os.cpu_count(),
        "t_step_s": round(t_step, 4),
        "t_step_diag_run_median_s": round(statistics.median(dur[s] for s in norm_steps), 4),
        "c_norm_ms": round(1e3 * c_norm, 3),
        "c_diag_ms": round(1e3 * c_diag, 2),
        "d_diag_ms": round(1e3 * d_diag, 2),
        "diag_steps_measured": len(diag_steps),
        "default_diag_every": default_every,
        "overhead_default_hooks_pct": round(100 * overhead(default_every, c_diag), 3),
        "overhead_default_wall_pct": round(100 * overhead(default_every, max(d_diag, c_diag)), 3),
        "overhead_every_step_pct": round(100 * max(d_diag, c_diag) / t_step, 2),
        "knn_check_s": round(knn_t.get("s", float("nan")), 3),
        "knn_subset": knn_subset,
        "knn_every": knn_every,
        "knn_overhead_pct": round(100 * knn_t.get("s", float("nan")) / (knn_every * t_step), 3) if knn_every else None,
    }
    print(json.dumps(res, indent=1))
    print(
        f"diagnostics overhead at log.diag_every={default_every}: {res['overhead_default_wall_pct']:.2f} % of step "
        f"time (hooks alone {res['overhead_default_hooks_pct']:.2f} %); kNN monitor every {knn_every} steps: "
        f"{res['knn_overhead_pct']} %"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
