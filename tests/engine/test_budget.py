"""train.time_budget_min: the schedule's length from the warm-up's step time (ssl_vit/engine/budget.py)."""

import itertools
import json

import pytest
import torch

from ssl_vit.checkpoints import load_pt
from ssl_vit.config import apply_overrides
from ssl_vit.engine import trainer
from ssl_vit.engine.budget import TimeBudget
from ssl_vit.errors import SslvitError
from ssl_vit.runs import pretrain
from tests.conftest import StopAt


def test_length_from_the_timed_part_of_the_warmup():
    b = TimeBudget(seconds=100, cap=1000, warmup=30)
    b.begin(step=0, now=0.0)
    assert b.calib_start == 10  # the first third of the warm-up is start-up, not timed
    t, total = 0.0, None
    for done in range(1, 31):
        t += 2.0 if done <= 10 else 0.5  # slow start-up steps, then 0.5 s per step
        total = b.observe(done, t)
        if done < 30:
            assert total is None
    # at step 30: 30 s spent, 0.5 s/step measured over steps 10..30, 70 s left -> 140 more steps
    assert b.step_s == pytest.approx(0.5) and total == 170
    assert b.observe(31, t + 0.5) is None  # fixed once


def test_a_skipped_step_at_the_timing_start_does_not_stop_the_budget():
    b = TimeBudget(seconds=100, cap=1000, warmup=30)
    b.begin(step=0, now=0.0)
    seen = [d for d in range(1, 31) if d != 10]  # step 10 was non-finite: the loop never reports it
    totals = [b.observe(d, 0.5 * d) for d in seen]
    assert b.calib_start == 11 and totals[-1] == 30 + (100 - 15) // 0.5  # timed from step 11 at 0.5 s/step


def test_length_is_capped_and_at_least_the_warmup():
    fast = TimeBudget(seconds=1e6, cap=500, warmup=12)
    fast.begin(0, 0.0)
    assert [fast.observe(i, float(i)) for i in range(1, 13)][-1] == 500
    slow = TimeBudget(seconds=5, cap=500, warmup=12)  # the budget is spent inside the warm-up
    slow.begin(0, 0.0)
    assert [slow.observe(i, float(i)) for i in range(1, 13)][-1] == 12


def test_a_short_warmup_is_refused():
    with pytest.raises(SslvitError, match="warm-up of at least 10 steps"):
        TimeBudget(seconds=60, cap=100, warmup=3)


def _budget_cfg(tiny_cfg):
    return apply_overrides(
        tiny_cfg,
        [
            "train.time_budget_min=0.5",
            "train.max_steps=60",
            "optim.warmup_steps=12",
            "eval.final_knn=false",
            "log.tensorboard=false",
            "train.checkpoint_every=5",
            "diag.enabled=false",
        ],
    )


@pytest.fixture()
def counter_clock(monkeypatch):
    """The budget's clock advances 1 s per reading: begin at 0, then one reading per step -> 1 s per step."""

    def install():
        ticks = itertools.count()
        monkeypatch.setattr(trainer, "_clock", lambda: float(next(ticks)))

    return install


def test_pretrain_sizes_its_schedule_and_keeps_it_on_resume(tiny_cfg, tmp_path, counter_clock):
    cfg = _budget_cfg(tiny_cfg)
    counter_clock()
    msgs = []
    pretrain(cfg, tmp_path / "full", log=msgs.append)
    # 30 s budget, 1 s per step, 12 s spent at the warm-up's end -> 18 more steps: 30 of the cap of 60
    full = load_pt(tmp_path / "full" / "checkpoints" / "last.pt")
    assert full["step"] == 30 and full["budget_total"] == 30
    assert any("-> 30 steps" in m and "--set train.max_steps=30 --set optim.warmup_steps=12" in m for m in msgs)
    events = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [e["total_steps"] for e in events if e.get("event") == "budget"] == [30]
    assert max(e["step"] for e in events) == 30

    # preempted after the length was fixed, resumed: the same length and bit-identical weights
    counter_clock()
    pretrain(cfg, tmp_path / "cut", hooks=[StopAt(20)], log=lambda m: None)
    counter_clock()  # another machine, another speed: the length stays
    pretrain(cfg, tmp_path / "cut", resume=True, log=lambda m: None)
    cut = load_pt(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert cut["step"] == 30 and cut["budget_total"] == 30
    for k in full["model"]:
        assert torch.equal(full["model"][k], cut["model"][k]), k


def test_budget_on_a_run_past_its_warmup_is_refused(tiny_cfg, tmp_path):
    plain = apply_overrides(
        tiny_cfg,
        [
            "train.max_steps=20",
            "optim.warmup_steps=12",
            "eval.final_knn=false",
            "log.tensorboard=false",
            "train.checkpoint_every=5",
            "diag.enabled=false",
        ],
    )
    pretrain(plain, tmp_path, hooks=[StopAt(15)], log=lambda m: None)
    with pytest.raises(SslvitError, match="past it without a resolved length; set train.max_steps"):
        pretrain(_budget_cfg(tiny_cfg), tmp_path, resume=True, log=lambda m: None)
