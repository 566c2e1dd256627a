"""Private kernel of ``core.hair_matching``: minimum-cost one-to-one assignment.

A small Hungarian algorithm (Kuhn-Munkres with potentials, O(n² m)) compiled with numba,
so the station does not need scipy.  The cost matrices of hair matching are gated (most
pairs forbidden), so ``assign_sparse`` splits them into connected components first and
solves each one on its own; components are a handful of hairs.
"""
from __future__ import annotations

import numba as nb
import numpy as np

FORBIDDEN = 1e9


@nb.njit(cache=True, error_model="numpy")
def _hungarian(cost):
    """Row -> column assignment (n <= m) minimising the total of ``cost`` (n, m)."""
    n, m = cost.shape
    inf = 1e18
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)  # p[j]: row (1-based) assigned to column j
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, inf)
        used = np.zeros(m + 1, np.bool_)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    out = np.full(n, -1, np.int64)
    for j in range(1, m + 1):
        if p[j] > 0:
            out[p[j] - 1] = j - 1
    return out


def _components(ok: np.ndarray) -> list:
    """Connected components of the bipartite graph ``ok`` (n, m bool): [(rows, cols)]."""
    n, m = ok.shape
    parent = np.arange(n + m)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in zip(*np.nonzero(ok)):
        ra, rb = find(i), find(n + j)
        if ra != rb:
            parent[ra] = rb
    groups: dict = {}
    for k in range(n + m):
        groups.setdefault(find(k), []).append(k)
    out = []
    for members in groups.values():
        rows = [k for k in members if k < n]
        cols = [k - n for k in members if k >= n]
        if rows and cols:
            out.append((np.array(rows), np.array(cols)))
    return out


def assign_sparse(cost: np.ndarray, ok: np.ndarray, unmatched_cost: float) -> np.ndarray:
    """(K, 2) pairs (row, col) of a minimum-cost partial matching.

    ``ok`` marks allowed pairs; leaving a row unmatched costs ``unmatched_cost`` (columns
    may stay unmatched for free), so an allowed pair is used when it helps the total.
    """
    pairs = []
    for rows, cols in _components(ok):
        sub = np.where(ok[np.ix_(rows, cols)], cost[np.ix_(rows, cols)], FORBIDDEN)
        nr = len(rows)
        # one private "unmatched" column per row
        dummy = np.full((nr, nr), FORBIDDEN)
        np.fill_diagonal(dummy, unmatched_cost)
        full = np.ascontiguousarray(np.hstack([sub, dummy]), dtype=np.float64)
        col = _hungarian(full)
        for r, c in enumerate(col):
            if 0 <= c < len(cols) and ok[rows[r], cols[c]]:
                pairs.append((rows[r], cols[c]))
    return np.array(pairs, np.int64).reshape(-1, 2)
