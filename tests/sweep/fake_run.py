"""A stand-in for `sslvit pretrain` in the sweep runner's tests (fast: no torch).

    python fake_run.py RUN_DIR RESUME(0|1) CALLS_FILE JSON

JSON: {"knn": final kNN or null, "exit": code, "records": [extra metrics.jsonl objects], "stderr": line,
"checkpoint": write checkpoints/last.pt, "cut": end metrics.jsonl mid-record}.
Appends "<run name> <resume>" to CALLS_FILE.
"""

import json
import os
import sys
from pathlib import Path

run, resume, calls, payload = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
with open(calls, "a") as f:
    f.write(f"{run.name} {resume} threads={os.environ.get('OMP_NUM_THREADS')}\n")
run.mkdir(parents=True, exist_ok=True)
(run / "config.yaml").write_text("seed: 0\n")
with open(run / "metrics.jsonl", "a") as f:
    for rec in payload.get("records", []):
        f.write(json.dumps(rec) + "\n")
    if payload.get("cut"):
        f.write('{"step": 99, "cut')  # a record cut by a crash: skipped by the reader
if payload.get("checkpoint", True):
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"fake")
print("training...", flush=True)
if payload.get("stderr"):
    print(payload["stderr"], file=sys.stderr, flush=True)
code = int(payload.get("exit", 0))
if code == 0 and payload.get("knn") is not None:
    (run / "results.json").write_text(json.dumps({"top1": payload["knn"], "n_test": 128}))
sys.exit(code)
