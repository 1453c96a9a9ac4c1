"""What the sweep summary reads from one run dir (metrics.jsonl / results.json), formats of other writers."""

import json

from ssl_vit.sweep.summary import run_metrics


def _write(run, recs, results=None):
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 9, "tr')
    if results is not None:
        (run / "results.json").write_text(json.dumps(results))


def test_alarm_tags_without_events_count_onsets_and_zero_tags_mean_none_fired(tmp_path):
    _write(
        tmp_path / "a",
        [
            {"step": s, "diag/alarm/rankme": v, "diag/alarm/loss_chance": 0.0}
            for s, v in [(1, 0.0), (2, 1.0), (3, 1.0), (4, 0.0), (5, 1.0)]
        ],
    )
    m = run_metrics(tmp_path / "a")
    assert m["alarms"] == {"rankme": 2} and m["alarms_total"] == 2 and m["first_alarm_step"] == 2
    _write(tmp_path / "b", [{"step": 1, "diag/alarm/rankme": 0.0}])
    assert run_metrics(tmp_path / "b")["alarms"] == {}  # logged, none fired: "0" in sweep.md
    _write(tmp_path / "c", [{"step": 1, "train/loss": 4.0}])
    assert run_metrics(tmp_path / "c")["alarms"] is None  # not logged at all: "–"


def test_final_knn_from_results_json_else_the_last_eval_record(tmp_path):
    recs = [
        {"step": 1, "diag/knn_top1": 50.0, "diag/rankme": 10.0},
        {"step": 2, "diag/knn_top1": 55.0},
        {"step": 2, "eval/knn_top1": 61.5},
    ]
    _write(tmp_path / "a", recs, {"top1": 62.0, "n_test": 10000})
    _write(tmp_path / "b", recs)
    a, b = run_metrics(tmp_path / "a"), run_metrics(tmp_path / "b")
    assert (a["knn_top1"], a["knn_source"], a["knn_n_test"]) == (62.0, "results.json", 10000)
    assert (b["knn_top1"], b["knn_monitor_last"], b["last_step"]) == (61.5, 55.0, 2)
    assert run_metrics(tmp_path / "missing")["knn_top1"] is None
