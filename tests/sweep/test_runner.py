"""The sweep runner with a fake `pretrain` (tests/sweep/fake_run.py): skip / resume / failure / summary."""

import json
import sys
from pathlib import Path

import pytest

from ssl_vit.sweep.grid import SweepSpec, parse_grid, validate
from ssl_vit.sweep.records import RUN_RECORD, write_spec
from ssl_vit.sweep.runner import run_sweep
from ssl_vit.sweep.summary import lr_sensitivity, write_summary

FAKE = str(Path(__file__).with_name("fake_run.py"))

# final kNN per (lr, frozen, seed): hand-computed below
KNN = {
    ("1e-3", "false"): (70.0, 72.0),
    ("1e-2", "false"): (80.0, 84.0),
    ("1e-1", "false"): (50.0, 40.0),
    ("1e-3", "true"): (74.0, 76.0),
    ("1e-2", "true"): (78.0, 78.0),
    ("1e-1", "true"): (77.0, 75.0),
}


def _spec(grid=("optim.lr=1e-3,1e-2,1e-1", "model.patch_embed.frozen=false,true"), seeds=(0, 1)):
    return SweepSpec("smoke", parse_grid(list(grid)), list(seeds), ["train.max_steps=2"])


def _fake(calls, payload_of):
    def command(spec, point, run_dir, resume, threads):
        return [sys.executable, FAKE, str(run_dir), str(int(resume)), str(calls), json.dumps(payload_of(point))]

    return command


def _payload(point):
    v = dict(point.values)
    knn = KNN[(v["optim.lr"], v["model.patch_embed.frozen"])][point.seed]
    recs = [
        {"step": 1, "train/loss": 4.0, "diag/rankme": 12.0, "diag/spike": 0.0},
        {"step": 2, "train/loss": 3.5, "diag/rankme": 9.0, "diag/knn_top1": knn - 1},
    ]
    if v["optim.lr"] == "1e-1":
        recs += [
            {
                "step": 3,
                "diag/spike": 1.0,
                "spikes": {"grad_norm/patch_embed": {"ratio": 9.0}},
                "diag/attn_logit_max/block_0": 12.5,
                "diag/attn_logit_max/block_1": 30.25,
            },
            {"step": 4, "event": "alarm", "alarm": "attn_logit", "value": 30.25, "reference": 10.0},
            {
                "step": 5,
                "diag/spike": 1.0,
                "diag/knn_top1": knn - 20,
                "knn_dip": {"drop": 19.0},
                "diag/rankme": 2.5,
                "diag/attn_logit_max/block_0": 18.0,
            },
            {"step": 6, "event": "alarm", "alarm": "attn_logit", "value": 40.0, "reference": 10.0},
            {"step": 6, "event": "alarm", "alarm": "rankme_drop", "value": 2.5, "reference": 9.0},
        ]
    return {"knn": knn, "records": recs, "cut": True}


def test_summary_table_and_lr_sensitivity_match_a_hand_computation(tmp_path):
    spec = _spec()
    cfgs = validate(spec, 1)
    out, calls = tmp_path / "sw", tmp_path / "calls.txt"
    logs = []
    res = run_sweep(spec, out, cfgs, jobs=3, threads=1, log=logs.append, command=_fake(calls, _payload))
    assert len(res.ran) == 12 and not res.failed and not res.skipped
    assert sum(1 for line in logs if " finished " in line) == 12 and any("12 of 12 done" in line for line in logs)
    assert all(line.endswith("threads=1") for line in calls.read_text().splitlines())  # OMP_NUM_THREADS=T
    s = json.loads((out / "sweep.json").read_text())
    assert s["lr_key"] == "optim.lr" and s["status_counts"] == {"ok": 12}
    arms = {a["arm"]: a for a in s["arms"]}
    # frozen=false: mean kNN per lr 71, 82, 45 -> gaps 11, 0, 37 -> 16.0; frozen=true: 75, 78, 76 -> 3, 0, 2 -> 5/3
    assert arms["frozen=false"]["lr_sensitivity"] == pytest.approx(16.0)
    assert arms["frozen=true"]["lr_sensitivity"] == pytest.approx(5 / 3)
    assert arms["frozen=false"]["best_lr"] == pytest.approx(1e-2) and arms["frozen=false"]["best_knn"] == 82.0
    curve = {c["lr"]: c for c in arms["frozen=false"]["curve"]}
    assert (curve[0.1]["knn_mean"], curve[0.1]["knn_min"], curve[0.1]["knn_max"]) == (45.0, 40.0, 50.0)
    assert lr_sensitivity({1e-3: 71.0, 1e-2: 82.0, 1e-1: 45.0}) == pytest.approx(16.0)
    rows = {r["name"]: r for r in s["runs"]}
    hot, calm = rows["lr=1e-1_frozen=false_seed=1"], rows["lr=1e-3_frozen=true_seed=0"]
    assert hot["knn_top1"] == 40.0 and hot["spikes"] == 2 and hot["first_spike_step"] == 3 and hot["knn_dips"] == 1
    assert hot["alarms"] == {"attn_logit": 2, "rankme_drop": 1} and hot["first_alarm_step"] == 4
    assert hot["attn_logit_max"] == 30.25 and (hot["rankme_min"], hot["rankme_last"]) == (2.5, 2.5)
    assert calm["knn_top1"] == 74.0 and calm["spikes"] == 0 and calm["knn_dips"] == 0
    assert calm["alarms"] is None and calm["attn_logit_max"] is None and calm["rankme_min"] == 9.0
    assert calm["cpu_s"] >= 0 and calm["status"] == "ok"
    md = (out / "sweep.md").read_text()
    assert "| frozen=false | 16.00 | 0.01 | 82.00 | 3 of 3 |" in md and "| frozen=true | 1.67 |" in md
    assert "| lr=1e-1_frozen=false_seed=1 | 1e-1 | false | 1 | 40.00 | 2 | 1 | attn_logit 2, rankme_drop 1 | 4 |" in md
    assert "| lr=1e-3_frozen=true_seed=0 | 1e-3 | true | 0 | 74.00 | 0 | 0 | – | – | 9.00 | 9.00 | – |" in md
    png = out / "lr_sensitivity.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finished_runs_are_skipped_half_done_resume_failures_are_recorded(tmp_path):
    spec = _spec(grid=("optim.lr=1e-3,1e-2,1e-1",), seeds=(0,))
    cfgs = validate(spec, 1)
    out, calls = tmp_path / "sw", tmp_path / "calls.txt"
    write_spec(out, spec, cfgs, 1, 1)  # as a sweep killed early would have left it
    done, half = out / "lr=1e-3_seed=0", out / "lr=1e-2_seed=0"
    for d in (done, half):
        (d / "checkpoints").mkdir(parents=True)
        (d / "checkpoints" / "last.pt").write_bytes(b"x")
        (d / "metrics.jsonl").write_text('{"step": 1, "train/loss": 4.0}\n')
    (done / "results.json").write_text('{"top1": 66.0}')

    def payload(point):
        if point.name.startswith("lr=1e-1"):
            return {"exit": 3, "stderr": "error: boom at step 1; lower optim.lr", "knn": None, "checkpoint": False}
        return {"knn": 70.0}

    logs = []
    res = run_sweep(spec, out, cfgs, jobs=2, threads=1, log=logs.append, command=_fake(calls, payload), plot=False)
    ran = sorted(calls.read_text().splitlines())
    assert ran == ["lr=1e-1_seed=0 0 threads=1", "lr=1e-2_seed=0 1 threads=1"]  # finished skipped; half-done --resume
    assert res.skipped == ["lr=1e-3_seed=0"] and res.failed == ["lr=1e-1_seed=0"]
    rec = json.loads((out / "lr=1e-1_seed=0" / RUN_RECORD).read_text())
    assert (
        rec["status"] == "failed" and rec["exit"] == 3 and rec["last_line"] == "error: boom at step 1; lower optim.lr"
    )
    assert "error: boom" in (out / "lr=1e-1_seed=0" / "run.log").read_text()
    assert any("FAILED lr=1e-1_seed=0: exit 3" in line and "3 of 3 done" in line for line in logs)
    s = write_summary(out, plot=False)
    rows = {r["name"]: r for r in s["runs"]}
    assert rows["lr=1e-1_seed=0"]["status"] == "failed" and rows["lr=1e-2_seed=0"]["knn_top1"] == 70.0
    arm = s["arms"][0]
    assert (arm["n_lr"], arm["n_lr_grid"]) == (2, 3) and arm["lr_sensitivity"] == pytest.approx(2.0)  # (70-66)/2
    assert (
        "- lr=1e-1_seed=0: exit 3, last line `error: boom at step 1; lower optim.lr`" in (out / "sweep.md").read_text()
    )

    # rerun: everything finished or failed -> nothing runs; --retry-failed runs the failed one again (fresh:
    # it left records, so with --resume, which purges them)
    calls.write_text("")
    res = run_sweep(spec, out, cfgs, jobs=2, threads=1, log=logs.append, command=_fake(calls, payload), plot=False)
    assert calls.read_text() == "" and res.failed == ["lr=1e-1_seed=0"]
    run_sweep(
        spec,
        out,
        cfgs,
        jobs=2,
        threads=1,
        log=logs.append,
        command=_fake(calls, lambda p: {"knn": 60.0}),
        retry_failed=True,
        plot=False,
    )
    assert calls.read_text().splitlines() == ["lr=1e-1_seed=0 1 threads=1"]
    rec = json.loads((out / "lr=1e-1_seed=0" / RUN_RECORD).read_text())
    assert rec["status"] == "ok" and [a["exit"] for a in rec["attempts"]] == [3, 0]
    assert rec["cpu_s"] == pytest.approx(sum(a["cpu_s"] for a in rec["attempts"]), abs=0.02)


def test_an_interrupted_run_resumes_on_the_next_sweep(tmp_path):
    spec = _spec(grid=("optim.lr=1e-3",), seeds=(0,))
    cfgs = validate(spec, 1)
    out, calls = tmp_path / "sw", tmp_path / "calls.txt"
    run_sweep(
        spec,
        out,
        cfgs,
        threads=1,
        log=lambda m: None,
        command=_fake(calls, lambda p: {"exit": 143, "knn": None}),
        plot=False,
    )  # pretrain's exit after SIGTERM: checkpoint saved
    rec = json.loads((out / "lr=1e-3_seed=0" / RUN_RECORD).read_text())
    assert rec["status"] == "interrupted"
    assert write_summary(out, plot=False)["runs"][0]["status"] == "interrupted"
    run_sweep(spec, out, cfgs, threads=1, log=lambda m: None, command=_fake(calls, lambda p: {"knn": 50.0}), plot=False)
    assert calls.read_text().splitlines() == ["lr=1e-3_seed=0 0 threads=1", "lr=1e-3_seed=0 1 threads=1"]
    assert write_summary(out, plot=False)["runs"][0]["knn_top1"] == 50.0
