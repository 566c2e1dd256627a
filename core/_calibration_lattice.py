"""Lattice fitting for ``core.calibration``: basis vectors, integer indices, model fit.

Model (pixels): a dot with lattice index q = (i, j) sits, before distortion, at
``u = o + M q``; the lens images it at ``c + (u - c) (1 + k1 ρ² + k2 ρ⁴)``, ρ = |u - c| / R,
with ``c`` the distortion centre (the image centre, or fitted near it) and ``R`` the half
diagonal of the image (k1 < 0: barrel).
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np


def lattice_basis(points: np.ndarray, centre: np.ndarray, n_probe: int = 400) -> tuple[float, float, float]:
    """Square-lattice spacing (px), orientation (rad, in [0, π/2)) and angular coherence.

    Uses the 4 nearest neighbours of the dots closest to the centre.  Coherence is the
    mean resultant length of 4·angle (1 = all neighbour vectors on a square lattice,
    ~0 = random).
    """
    d_centre = np.hypot(*(points - centre).T)
    probe = points[np.argsort(d_centre)[: min(n_probe, len(points))]]
    diff = probe[:, None, :] - points[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    dist[dist == 0] = np.inf
    k = min(4, len(points) - 1)
    nn = np.argsort(dist, axis=1)[:, :k]
    nn_dist = np.take_along_axis(dist, nn, axis=1)
    # a dot at the edge of the card has fewer than 4 lattice neighbours: its 4th-nearest
    # is a diagonal (√2 farther), which must not vote on the orientation
    keep = (nn_dist < 1.2 * nn_dist[:, :1]).ravel()
    vec = -np.take_along_axis(diff, nn[..., None], axis=1).reshape(-1, 2)[keep]
    length = np.hypot(vec[:, 0], vec[:, 1])
    angle4 = 4.0 * np.arctan2(vec[:, 1], vec[:, 0])
    cs, sn = float(np.mean(np.cos(angle4))), float(np.mean(np.sin(angle4)))
    theta = (math.atan2(sn, cs) / 4.0) % (math.pi / 2)
    return float(np.median(length)), theta, math.hypot(cs, sn)


def assign_indices(points: np.ndarray, spacing: float, theta: float, centre: np.ndarray,
                   tolerance: float = 0.3) -> tuple[np.ndarray, np.ndarray, int]:
    """Walk the lattice from the dot nearest ``centre``, giving each reached dot (i, j).

    Steps are local (neighbour = current dot ± basis vector, within ``tolerance`` ×
    spacing), so distortion that accumulates across the frame does not break the walk.
    Returns (indices (n, 2) int, reached mask (n,), conflicts): a conflict is a dot
    reached with two different indices or two dots claiming one index.
    """
    a = spacing * np.array([math.cos(theta), math.sin(theta)])
    b = spacing * np.array([-math.sin(theta), math.cos(theta)])
    cell = spacing
    grid: dict[tuple[int, int], list[int]] = {}
    keys = np.floor(points / cell).astype(np.int64)
    for n, (kx, ky) in enumerate(keys):
        grid.setdefault((int(kx), int(ky)), []).append(n)

    def nearest(p: np.ndarray) -> int:
        kx, ky = int(math.floor(p[0] / cell)), int(math.floor(p[1] / cell))
        best, best_d = -1, tolerance * spacing
        for gx in (kx - 1, kx, kx + 1):
            for gy in (ky - 1, ky, ky + 1):
                for n in grid.get((gx, gy), ()):
                    d = math.hypot(points[n, 0] - p[0], points[n, 1] - p[1])
                    if d < best_d:
                        best, best_d = n, d
        return best

    indices = np.zeros((len(points), 2), np.int64)
    reached = np.zeros(len(points), bool)
    owner: dict[tuple[int, int], int] = {}
    start = int(np.argmin(np.hypot(*(points - centre).T)))
    reached[start] = True
    owner[(0, 0)] = start
    queue = deque([start])
    conflicts = 0
    steps = ((1, 0, a), (-1, 0, -a), (0, 1, b), (0, -1, -b))
    while queue:
        n = queue.popleft()
        i, j = indices[n]
        for di, dj, step in steps:
            m = nearest(points[n] + step)
            if m < 0:
                continue
            key = (int(i + di), int(j + dj))
            if reached[m]:
                if indices[m, 0] != key[0] or indices[m, 1] != key[1]:
                    conflicts += 1
                continue
            if key in owner:
                conflicts += 1
                continue
            reached[m] = True
            indices[m] = key
            owner[key] = m
            queue.append(m)
    return indices, reached, conflicts


def _project(params: np.ndarray, q: np.ndarray, centre: np.ndarray, r_half: float) -> np.ndarray:
    o = params[0:2]
    m = params[2:6].reshape(2, 2)
    axis = centre + params[8:10]
    u = o + q @ m.T - axis
    rho2 = (u[:, 0] ** 2 + u[:, 1] ** 2) / (r_half * r_half)
    return axis + u * (1.0 + params[6] * rho2 + params[7] * rho2 * rho2)[:, None]


def fit_lattice(points: np.ndarray, q: np.ndarray, centre: np.ndarray, r_half: float,
                full: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of (o, M, k1) and, with ``full``, also k2 and the offset of the
    distortion centre (optical axis) from ``centre``; Levenberg-Marquardt from the affine
    solution, the full model started from the k1 fit.

    Returns (params[10] = o_x, o_y, M (row-major), k1, k2, axis_dx, axis_dy; residual
    vectors (n, 2) px).  Parameters not fitted stay 0.
    """
    design = np.column_stack([np.ones(len(q)), q.astype(np.float64)])
    coef, *_ = np.linalg.lstsq(design, points, rcond=None)  # affine start, no distortion
    params = np.zeros(10)
    params[:6] = [coef[0, 0], coef[0, 1], coef[1, 0], coef[2, 0], coef[1, 1], coef[2, 1]]
    params = _levenberg_marquardt(params, 7, points, q, centre, r_half)
    if full:
        candidate = _levenberg_marquardt(params.copy(), 10, points, q, centre, r_half)
        # the axis is only defined through the distortion; keep it near the image centre
        if np.hypot(*candidate[8:10]) < 0.1 * r_half:
            params = candidate
    return params, points - _project(params, q, centre, r_half)


def _levenberg_marquardt(params, n_par, points, q, centre, r_half, iterations=30):
    lam = 1e-3
    res = (points - _project(params, q, centre, r_half)).ravel()
    cost = float(res @ res)
    for _ in range(iterations):
        jac = np.empty((res.size, n_par))
        pred = points.ravel() - res
        for k in range(n_par):
            h = 1e-6 * max(1.0, abs(params[k]))
            bumped = params.copy()
            bumped[k] += h
            jac[:, k] = (_project(bumped, q, centre, r_half).ravel() - pred) / h
        jtj = jac.T @ jac
        grad = jac.T @ res
        while True:
            damped = jtj + lam * np.diag(np.maximum(np.diag(jtj), 1e-12))
            step = np.linalg.solve(damped, grad)
            trial = params.copy()
            trial[:n_par] += step
            trial_res = (points - _project(trial, q, centre, r_half)).ravel()
            trial_cost = float(trial_res @ trial_res)
            if trial_cost <= cost:
                params, res, lam = trial, trial_res, max(lam / 10, 1e-9)
                converged = cost - trial_cost <= 1e-12 * max(cost, 1e-12)
                cost = trial_cost
                break
            lam *= 10
            if lam > 1e8:
                return params
        if converged:
            break
    return params


def canonical_basis(m: np.ndarray) -> np.ndarray:
    """The lattice basis (columns) related to ``m`` by the square lattice's symmetry whose
    first vector points in [0°, 90°) and whose handedness matches the image axes."""
    if np.linalg.det(m) < 0:
        m = m[:, ::-1]
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])  # (i, j) -> (-j, i): the lattice maps to itself
    for _ in range(4):
        angle = math.degrees(math.atan2(m[1, 0], m[0, 0]))
        if 0.0 <= angle < 90.0:
            break
        m = m @ rot
    return m
