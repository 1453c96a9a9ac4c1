import os

from ssl_vit.engine import cpu


def test_busy_cpu_warning_only_when_loaded_and_multithreaded(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    msg = cpu.busy_cpu_warning(2)
    assert msg and "train.threads=1" in msg and "load 3.0 on 2 cores" in msg
    assert cpu.busy_cpu_warning(1) is None  # one thread never waits on a barrier
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert cpu.busy_cpu_warning(2) is None  # quiet machine


def test_cpu_threads_restores_the_previous_count():
    import torch

    before = torch.get_num_threads()
    with cpu_threads_ctx(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads_ctx(0):  # 0: leave as is
        assert torch.get_num_threads() == before


def test_a_run_started_from_python_does_not_leak_its_thread_count(tiny_cfg, tmp_path):
    import torch

    from ssl_vit.config.loading import apply_overrides
    from ssl_vit.runs import pretrain

    before = torch.get_num_threads()
    cfg = apply_overrides(tiny_cfg, ["train.threads=1", "train.max_steps=1", "eval.final_knn=false"])
    pretrain(cfg, tmp_path, log=lambda m: None)
    assert torch.get_num_threads() == before


cpu_threads_ctx = cpu.cpu_threads
