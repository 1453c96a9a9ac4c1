"""eval/reproduce/fmnist_tuning.py: each study's arms become the right commands, and the table is built from runs."""

import json
from dataclasses import replace

import pytest

from ssl_vit.config.loading import load_config
from tests.scripts import load_script


def _tuning():
    return load_script("eval/reproduce/fmnist_tuning.py")


def test_arm_sets_scale_steps_and_warmup_with_batch_and_images():
    t = _tuning()
    tiny = t.STUDIES["tiny128"]
    sets = t.arm_sets(tiny, "b128")  # batch 128: twice the steps and warm-up steps of batch 256, same images
    assert "train.max_steps=2000" in sets and "optim.warmup_steps=222" in sets
    assert sets[-1] == "train.batch_size=128"  # the arm's own overrides come last and win
    pico = t.STUDIES["pico"]
    assert "train.max_steps=1110" in t.arm_sets(pico, "micro_x3")  # 3x the images at the same batch
    assert not any(s.startswith("optim.warmup_steps") for s in t.arm_sets(pico, "base"))


@pytest.mark.parametrize("study", ["pico", "tiny128"])
def test_every_arm_is_a_valid_config(study):
    t = _tuning()
    s = t.STUDIES[study]
    for name in s.arms:
        cfg = load_config(s.recipe, t.arm_sets(s, name))  # unknown keys or invalid values raise
        assert cfg.train.max_steps > 0 and cfg.train.threads == 1


def test_write_table_reads_runs_sorted_by_top1(tmp_path):
    t = _tuning()
    study = t.STUDIES["tiny128"]
    for name, top1, tput in [("base", 83.1, 300.0), ("crop04", 84.2, 310.0)]:
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"top1": top1}))
        recs = [{"step": 500, "train/throughput": tput}, {"step": 1000, "train/throughput": tput + 10}]
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    (tmp_path / "crop04" / "arm.json").write_text(json.dumps({"exit": 0, "cpu_s": 600.0, "wall_s": 610.0}))
    out = tmp_path / "table.md"
    t.write_table(study, tmp_path, out)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "kNN" not in line]
    assert rows[0].startswith("| crop04 |") and "| 84.20 | 315 | 10.0 |" in rows[0]  # best first, CPU min
    assert rows[1].startswith("| base |") and rows[1].endswith("| 83.10 | 305 | – |")  # no arm.json: no CPU time
    assert "--study tiny128" in out.read_text()
    t.write_table(replace(study, steps=500), tmp_path, out)  # --steps N: a copy of the study, still named
    assert "--study tiny128" in out.read_text() and "500 steps at batch 256" in out.read_text()


def test_study_names_match_their_keys():
    t = _tuning()
    assert all(s.name == k for k, s in t.STUDIES.items())
