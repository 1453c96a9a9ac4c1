"""``sslvit sweep``: run a recipe over a grid of ``--set`` values and seeds, side by side, resumably, and
summarise the runs (final kNN, spikes, kNN dips, alarms, RankMe, attention logits, CPU time) with the LR
sensitivity of Wortsman et al. 2023 and an lr-sensitivity plot.

One module per idea:

* :mod:`ssl_vit.sweep.grid` -- ``--grid`` / ``--seeds`` parsing, the expansion into points, run names, the
  sweep spec (what makes two sweeps the same), up-front validation of every point's config.
* :mod:`ssl_vit.sweep.procs` -- a pool of subprocesses with each one's own CPU time (``os.wait4``).
* :mod:`ssl_vit.sweep.runner` -- one ``python -m ssl_vit pretrain`` per point: skip / resume / retry, logs,
  per-run records, progress lines.
* :mod:`ssl_vit.sweep.summary` -- read each run dir, ``sweep.json`` / ``sweep.md``, LR sensitivity.
* :mod:`ssl_vit.sweep.plot` -- ``lr_sensitivity.png``.
"""
