"""knn_monitor.py: dip detection on a kNN history."""

from ssl_vit.diagnostics.knn_monitor import find_dips


def test_dips_are_drops_below_the_best_so_far():
    hist = [(500, 70.0), (1000, 74.0), (1500, 73.0), (2000, 69.5), (2500, 75.0), (3000, 72.9)]
    dips = find_dips(hist, min_drop=2.0)
    assert [d["step"] for d in dips] == [2000, 3000]
    assert dips[0]["best"] == 74.0 and dips[0]["best_step"] == 1000 and dips[0]["drop"] == 4.5
    assert dips[1]["best_step"] == 2500 and abs(dips[1]["drop"] - 2.1) < 1e-9


def test_a_rising_or_flat_curve_has_no_dips():
    assert find_dips([(i, 50.0 + i) for i in range(10)], 1.0) == []
    assert find_dips([(i, 60.0) for i in range(10)], 0.5) == []
    assert find_dips([], 1.0) == []
