"""Benchmark: one 256 x 256 PCM core MVM vs plain float32 matmul (and aihwkit when importable).

Usage::

    .venv/bin/python bench/pcm_mvm.py [--threads 1] [--reps 3000]

Every variant runs in the same process with the same thread count (numpy BLAS, torch, Numba). Our MVM
includes the DAC, the crossbar matmul, read noise (frozen snapshot, or per-MVM 1/f noise = one more matmul),
output noise, the ADC and the drift-compensation factor, after ``program()`` and ``drift(3600 s)``.
Reported: median µs per call, and ratios. aihwkit's ``InferenceRPUConfig`` (C++ tile, PCMLikeNoiseModel,
global drift compensation, default IO) is timed when ``import aihwkit`` works (a separate venv, spec §5);
otherwise the spec's measured numbers on this machine (66 µs at batch 1, 811 µs at batch 64, upper ends of
two runs with torch at 2 threads) are printed as labelled context only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="threads for BLAS, torch and Numba")
    ap.add_argument("--reps", type=int, default=3000, help="timed calls per variant (batch 64: reps / 8)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pcm_l2l_ros.pcm import PCMArray, PCMConfig  # noqa: E402

SPEC_AIHWKIT_US = {1: 66.0, 64: 811.0}  # spec pcm-anchor-aihwkit.md §5, C++ tile, default IO, upper ends


def timeit(fn, reps: int) -> float:
    """Median wall time of ``fn()`` in µs over ``reps`` calls (after a warm-up)."""
    for _ in range(max(20, reps // 20)):
        fn()
    ts = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter()
        fn()
        ts[i] = time.perf_counter() - t0
    return float(np.median(ts) * 1e6)


def aihwkit_forward(W: np.ndarray):
    """A callable timing aihwkit's InferenceRPUConfig tile forward, or None if aihwkit is not importable."""
    try:
        from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
        from aihwkit.nn import AnalogLinear
        from aihwkit.simulator.configs import InferenceRPUConfig
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        print(f"aihwkit: not importable ({type(exc).__name__}: {exc})")
        return None
    rpu = InferenceRPUConfig()
    rpu.noise_model = PCMLikeNoiseModel()
    rpu.drift_compensation = GlobalDriftCompensation()
    layer = AnalogLinear(W.shape[0], W.shape[1], bias=False, rpu_config=rpu)
    layer.set_weights(torch.from_numpy(W.T.astype(np.float32).copy()))
    layer.eval()
    layer.program_analog_weights()
    layer.drift_analog_weights(3600.0)

    def make(x):
        xt = torch.from_numpy(x)

        def f():
            with torch.no_grad():
                return layer(xt)

        return f

    return make


def main() -> int:
    torch.set_num_threads(ARGS.threads)
    rng = np.random.default_rng(ARGS.seed)
    n = 256
    W = rng.uniform(-1, 1, (n, n))
    W32 = W.astype(np.float32)
    Wt = torch.from_numpy(W32)
    variants = {
        "ours aihwkit_compat (frozen read noise, 7b DAC/9b ADC, out noise, GDC)": PCMConfig.aihwkit_compat(),
        "ours default (frozen read noise, 8b DAC/ADC, out noise, GDC)": PCMConfig(adc_range=20.0),
        "ours hermes_like (per-MVM read noise, 8b DAC/ADC, out noise, per-column DC)": PCMConfig.hermes_like(
            adc_range=20.0
        ),
    }
    arrays = {}
    for name, cfg in variants.items():
        t0 = time.perf_counter()
        arr = PCMArray(W, cfg, rng=ARGS.seed)
        t1 = time.perf_counter()
        arr.drift(3600.0)
        t2 = time.perf_counter()
        arrays[name] = arr
        print(f"{name}: program {1e3 * (t1 - t0):.1f} ms, drift(3600 s) {1e3 * (t2 - t1):.1f} ms")
    aih = aihwkit_forward(W)
    print(f"threads={ARGS.threads}, numpy {np.__version__}, torch {torch.__version__}")
    for batch in (1, 64):
        reps = ARGS.reps if batch == 1 else max(200, ARGS.reps // 8)
        x = rng.uniform(-1, 1, (batch, n)).astype(np.float32)
        xt = torch.from_numpy(x)
        res = {
            "numpy fp32 x @ W": timeit(lambda x=x: x @ W32, reps),
            "torch fp32 x @ W": timeit(lambda xt=xt: xt @ Wt, reps),
        }
        for name, arr in arrays.items():
            res[name] = timeit(lambda arr=arr, x=x: arr.mvm(x), reps)
        if aih is not None:
            res["aihwkit InferenceRPUConfig (C++ tile)"] = timeit(aih(x), reps)
        plain = min(res["numpy fp32 x @ W"], res["torch fp32 x @ W"])
        aih_ref = res.get("aihwkit InferenceRPUConfig (C++ tile)")
        print(f"\nbatch {batch} ({reps} calls, median µs)")
        for name, us in res.items():
            line = f"  {us:9.1f} µs  {us / plain:5.2f}x plain"
            if name.startswith("ours"):
                ref = aih_ref if aih_ref is not None else SPEC_AIHWKIT_US[batch]
                tag = "aihwkit here" if aih_ref is not None else "aihwkit spec figure"
                line += f"  {ref / us:5.1f}x faster than {tag}"
            print(f"{line}  {name}")
        if aih_ref is None:
            print(
                f"  context only (not measured here): aihwkit C++ tile {SPEC_AIHWKIT_US[batch]:.0f} µs "
                "per spec §5 (2 torch threads)"
            )
    # error statistics of the aihwkit-compatible variant (sanity, not timing)
    x = rng.uniform(-1, 1, (256, n)).astype(np.float32)
    for name, arr in arrays.items():
        y = arr.mvm(x)
        ref = x.astype(np.float64) @ W
        print(f"relative MVM error at 1 h: {np.linalg.norm(y - ref) / np.linalg.norm(ref):.4f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
