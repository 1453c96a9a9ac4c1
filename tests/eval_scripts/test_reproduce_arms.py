"""eval/reproduce/arms.py: the side-by-side runner the reproduction scripts share."""

import json
import sys

from tests.scripts import load_script


def _arms():
    return load_script("eval/reproduce/arms.py")


def test_run_arms_records_exit_codes_cpu_and_logs(tmp_path):
    arms = _arms()
    runs = tmp_path / "runs"
    (runs / "ok").mkdir(parents=True)
    (runs / "ok" / "stale.txt").write_text("from an earlier run")
    make = "import os, sys; os.makedirs(sys.argv[1], exist_ok=True); print('hello', os.environ['OMP_NUM_THREADS'])"
    cmds = {
        "ok": [sys.executable, "-c", make, str(runs / "ok")],
        "bad": [sys.executable, "-c", "import sys; sys.exit(3)"],
        "ok2": [sys.executable, "-c", make, str(runs / "ok2")],
    }
    done = arms.run_arms(cmds, runs, jobs=2, threads=1)
    assert {k: v["exit"] for k, v in done.items()} == {"ok": 0, "bad": 3, "ok2": 0}
    assert not (runs / "ok" / "stale.txt").exists()  # fresh: old run dir removed first
    assert (runs / "ok.log").read_text().strip() == "hello 1"  # log per arm, thread count passed on
    rec = json.loads((runs / "ok" / "arm.json").read_text())
    assert rec == arms.arm_record(runs / "ok") and rec["cpu_s"] >= 0 and rec["wall_s"] > 0
    assert arms.arm_record(runs / "bad") == {}  # no run dir, nothing recorded


def test_sslvit_cmd_expands_sets():
    cmd = _arms().sslvit_cmd("pretrain", "--recipe", "smoke", sets=["a=1", "b=2"])
    assert cmd[1:] == ["-m", "ssl_vit", "pretrain", "--recipe", "smoke", "--set", "a=1", "--set", "b=2"]
