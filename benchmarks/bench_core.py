"""Speed and memory of core.analyze against a plain OpenCV pipeline, timed in the same process.

Prints medians over --runs runs (default 21) for:
  * full analysis of a 2028x1520 RGB frame vs the OpenCV baseline (blur, black-hat, Otsu,
    connected components, distance transform) on the same frame, and their ratio;
  * preview analysis of a 1014x760 frame;
  * OpenCV thread settings, each timed the same way;
  * peak memory of one full analysis (tracemalloc peak, and ru_maxrss growth in a fresh process);
  * cold start: first analysis with an empty numba cache vs with the cache filled.

    .venv/bin/python benchmarks/bench_core.py [--runs 21] [--skip-cold]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from tests.phantoms.generator import PhantomSpec, render_phantom  # noqa: E402


def opencv_baseline(rgb: np.ndarray) -> int:
    """The classic pipeline: grey, blur, black-hat, Otsu, connected components, distance transform."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    g = cv2.GaussianBlur(g, (5, 5), 0)
    bh = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (33, 33)))
    _, bw = cv2.threshold(bh, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, _, stats, _ = cv2.connectedComponentsWithStats(bw)
    dt = cv2.distanceTransform(bw, cv2.DIST_L2, 3)
    return int(n + dt.max())


def timed(fn, runs: int) -> tuple[float, float]:
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(ts), float(np.percentile(ts, 90))


def frames():
    full, _ = render_phantom(7, PhantomSpec(width=2028, height=1520, um_per_px=4.0))
    prev, _ = render_phantom(8, PhantomSpec(width=1014, height=760, um_per_px=8.0))
    return full, prev


def interleaved(full, runs):
    """Core and baseline alternate run by run, so machine load hits both alike."""
    from core.analysis import analyze

    tc, tb = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        analyze(full, 4.0)
        t1 = time.perf_counter()
        opencv_baseline(full)
        t2 = time.perf_counter()
        tc.append((t1 - t0) * 1000)
        tb.append((t2 - t1) * 1000)
    return statistics.median(tc), statistics.median(tb), statistics.median(np.array(tc) / np.array(tb))


def _vm_hwm_mb() -> float:
    """Peak resident set of this process image (VmHWM; ru_maxrss would include the parent's
    peak, which Linux carries across fork + exec)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_memory(frame_path: str) -> None:
    """Run in a fresh process: peak RSS and tracemalloc peak of one full analysis of ``frame_path``."""
    import tracemalloc

    from core.analysis import analyze, warm_up

    warm_up()  # kernels loaded: their code is not per-frame memory
    full = cv2.cvtColor(cv2.imread(frame_path), cv2.COLOR_BGR2RGB)
    rss0 = _vm_hwm_mb()
    tracemalloc.start()
    analyze(full, 4.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _vm_hwm_mb()
    print(json.dumps({"tracemalloc_peak_mb": peak / 2**20, "maxrss_growth_mb": rss1 - rss0,
                      "maxrss_before_mb": rss0, "maxrss_mb": rss1}))


def child_first_call() -> None:
    t0 = time.perf_counter()
    from core.analysis import analyze, warm_up

    t1 = time.perf_counter()
    warm_up()
    t2 = time.perf_counter()
    full, _ = frames()
    t3 = time.perf_counter()
    analyze(full, 4.0)
    t4 = time.perf_counter()
    print(json.dumps({"import_ms": (t1 - t0) * 1000, "warm_up_ms": (t2 - t1) * 1000,
                      "first_frame_ms": (t4 - t3) * 1000}))


def run_child(mode: str, env: dict | None = None, arg: str = "") -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, *([arg] if arg else [])],
                         capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("child_arg", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "memory":
        return child_memory(args.child_arg)
    if args.child == "first":
        return child_first_call()

    import numba

    from core.analysis import analyze, analyze_preview, configure_threads, warm_up

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; numba {numba.__version__}, "
          f"cv2 {cv2.__version__}")
    warm_up()
    full, prev = frames()
    print(f"full frame {full.shape[1]}x{full.shape[0]} ({analyze(full, 4.0).hair_count} hairs), "
          f"preview {prev.shape[1]}x{prev.shape[0]}; medians of {args.runs} runs\n")

    print("thread settings: OpenCV threads (core: no numba parallel=True, which was 2.5x slower here; quality and half "
          "the width fits on a second plain thread)")
    results = {}
    for cv_threads in (1, 2):
        cv2.setNumThreads(cv_threads)
        core_ms, base_ms, ratio = interleaved(full, args.runs)
        prev_ms, _ = timed(lambda: analyze_preview(prev, 8.0), args.runs)
        results[cv_threads] = core_ms
        print(f"  cv2 {cv_threads} thread(s): full {core_ms:6.1f} ms  baseline {base_ms:6.1f} ms  "
              f"ratio {ratio:4.2f}   preview {prev_ms:5.1f} ms")
    configure_threads(1)
    print("\nstation setting: core.configure_threads(1) -> OpenCV 1 thread")
    core_ms, base_ms, ratio = interleaved(full, args.runs)
    p50, p90 = timed(lambda: analyze_preview(prev, 8.0), args.runs)
    print(f"full analysis 2028x1520: median {core_ms:.1f} ms   OpenCV baseline: median {base_ms:.1f} ms   "
          f"median of per-run ratios core/baseline {ratio:.2f}  (targets: <= 50 ms, ratio <= 1.0)")
    print(f"preview 1014x760: median {p50:.1f} ms, p90 {p90:.1f} ms  (target <= 8 ms)")

    with tempfile.TemporaryDirectory() as tmp:
        frame_path = str(pathlib.Path(tmp) / "full.png")
        cv2.imwrite(frame_path, cv2.cvtColor(full, cv2.COLOR_RGB2BGR))
        mem = run_child("memory", arg=frame_path)
    print(f"memory, one full analysis in a fresh process: tracemalloc peak {mem['tracemalloc_peak_mb']:.0f} MB, "
          f"peak RSS {mem['maxrss_before_mb']:.0f} MB before (Python + numpy + OpenCV + numba + frame) -> "
          f"{mem['maxrss_mb']:.0f} MB after, growth {mem['maxrss_growth_mb']:.0f} MB  (target <= 300 MB)")
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as empty:
            cold = run_child("first", {"NUMBA_CACHE_DIR": empty})
        warm = run_child("first")
        print(f"cold (empty numba cache): import {cold['import_ms']:.0f} ms, warm_up {cold['warm_up_ms']:.0f} ms, "
              f"first frame after warm_up {cold['first_frame_ms']:.0f} ms")
        print(f"cached:                   import {warm['import_ms']:.0f} ms, warm_up {warm['warm_up_ms']:.0f} ms, "
              f"first frame after warm_up {warm['first_frame_ms']:.0f} ms")


if __name__ == "__main__":
    main()
