"""NSGA-II survivor selection (Deb et al. 2002, sec. III): fast non-dominated sorting + crowding distance.

Written by hand: a few lines, and pymoo (which the authors' ViTAS code drives) is not a dependency here.
Objectives are *minimised*; pass ``(-top1, gflops)``.

Example::

    fronts = non_dominated_fronts([(-80, 0.02), (-82, 0.03), (-79, 0.04)])   # [[0, 1], [2]]
    keep = nsga2_select(objs, 2)                                               # indices of the survivors
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

Obj = Tuple[float, ...]


def dominates(a: Obj, b: Obj) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_fronts(objs: Sequence[Obj]) -> List[List[int]]:
    """Indices grouped into fronts: front 0 is the Pareto front, front 1 the front once 0 is removed, ..."""
    n = len(objs)
    dominated_by = [[j for j in range(n) if dominates(objs[i], objs[j])] for i in range(n)]
    count = [sum(dominates(objs[j], objs[i]) for j in range(n)) for i in range(n)]
    fronts, current = [], [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return fronts


def crowding_distance(objs: Sequence[Obj], front: Sequence[int]) -> dict:
    """{index: crowding distance} within one front (boundary points: infinity)."""
    dist = {i: 0.0 for i in front}
    for m in range(len(objs[front[0]])):
        order = sorted(front, key=lambda i: objs[i][m])
        lo, hi = objs[order[0]][m], objs[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = float("inf")
        if hi == lo:
            continue
        for a, i, b in zip(order, order[1:], order[2:]):
            dist[i] += (objs[b][m] - objs[a][m]) / (hi - lo)
    return dist


def nsga2_select(objs: Sequence[Obj], k: int) -> List[int]:
    """The ``k`` survivors: whole fronts in rank order, the last one cut by crowding distance (largest first)."""
    keep: List[int] = []
    for front in non_dominated_fronts(objs):
        if len(keep) + len(front) <= k:
            keep += front
        else:
            d = crowding_distance(objs, front)
            keep += sorted(front, key=lambda i: (-d[i], i))[: k - len(keep)]
            break
    return keep


def rank_and_crowding(objs: Sequence[Obj]) -> List[Tuple[int, float]]:
    """Per index ``(front rank, -crowding)``: smaller is better (binary tournament key)."""
    out = [(0, 0.0)] * len(objs)
    for r, front in enumerate(non_dominated_fronts(objs)):
        d = crowding_distance(objs, front)
        for i in front:
            out[i] = (r, -d[i])
    return out
