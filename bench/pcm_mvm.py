"""Benchmark: one 256 x 256 PCM core MVM vs plain float32 matmul (and aihwkit when importable).

Usage::

    .venv/bin/python bench/pcm_mvm.py [--threads 1] [--blocks 40] [--aihwkit-python PATH]

Every variant runs in the same process with the same thread count (numpy BLAS, torch, Numba). Our MVM
includes the DAC, the crossbar matmul, read noise (frozen snapshot, or per-MVM 1/f noise = one more matmul),
output noise, the ADC and the drift-compensation factor, after ``program()`` and ``drift(3600 s)``.
Reported: mean µs per call over blocks of consecutive calls (so amortised costs are included), median over
blocks, variants interleaved; and ratios. aihwkit's tiles (``InferenceRPUConfig``: C++ tile; and
``TorchInferenceRPUConfig``; PCMLikeNoiseModel, global drift compensation, default IO) are timed the same way
when aihwkit imports here or in the venv given by ``--aihwkit-python`` (how to build aihwkit 1.2.0 for it:
bench/README.md). Without aihwkit, the timings of one reference run listed in bench/README.md (C++ tile 54-66 µs
at batch 1, 677-811 µs at batch 64, 2 torch threads) are printed as labelled context only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="threads for BLAS, torch and Numba")
    ap.add_argument("--blocks", type=int, default=40, help="timed blocks per variant and batch size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--aihwkit-python",
        default=None,
        help="python of a separate venv with aihwkit (e.g. .bench-venvs/aihwkit/bin/python, see bench/README.md); "
        "its tile is "
        "timed there in a subprocess with the same weights, inputs and thread count",
    )
    return ap.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pcm_l2l_ros.pcm import PCMArray, PCMConfig  # noqa: E402

# aihwkit 1.2.0 timings of one reference run (bench/README.md, "Peer environments"), context when aihwkit is absent
REF_AIHWKIT_US = {1: 66.0, 64: 811.0}  # C++ tile, default IO, upper ends
REF_AIHWKIT_LOW_US = {1: 54.0, 64: 677.0}  # lower ends of the same two runs
REF_AIHWKIT_PCM_READ_US = {1: 186.0, 64: 7090.0}  # StandardHWATrainingPreset (PCM_READ, C++)
REF_PLAIN_US = {1: 6.8, 64: 77.0}  # plain x @ W.T in those runs (upper ends)


HERMES_NAME = "ours hermes_like (per-MVM read noise, 8b DAC/ADC, out noise, per-column DC)"


def time_interleaved(fns: dict, blocks: int, per_block: int) -> dict:
    """Mean wall time (µs) per call of each callable: ``per_block`` consecutive calls are timed together
    (so amortised costs such as refilling our buffered noise stream are included), blocks of the
    variants are interleaved in a shuffled order (load changes and cache effects hit all alike), and the
    median over ``blocks`` blocks is reported (robust to preemption on a shared machine)."""
    for fn in fns.values():
        for _ in range(per_block):
            fn()
    keys = list(fns)
    order_rng = np.random.default_rng(1)
    ts = {k: np.empty(blocks) for k in fns}
    for i in range(blocks):
        for j in order_rng.permutation(len(keys)):
            k = keys[j]
            fn = fns[k]
            t0 = time.perf_counter()
            for _ in range(per_block):
                fn()
            ts[k][i] = (time.perf_counter() - t0) / per_block
    return {k: float(np.median(v) * 1e6) for k, v in ts.items()}


AIHWKIT_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
threads, seed, blocks = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig
W = np.load(sys.argv[4])
out = {}
for label, cls in (("InferenceRPUConfig (C++ tile)", InferenceRPUConfig),
                   ("TorchInferenceRPUConfig (torch tile)", TorchInferenceRPUConfig)):
    try:
        rpu = cls()
        rpu.noise_model = PCMLikeNoiseModel()
        rpu.drift_compensation = GlobalDriftCompensation()
        layer = AnalogLinear(W.shape[0], W.shape[1], bias=False, rpu_config=rpu)
        layer.set_weights(torch.from_numpy(W.T.astype(np.float32).copy()))
        layer.eval()
        layer.program_analog_weights()
        layer.drift_analog_weights(3600.0)
        rng = np.random.default_rng(seed)
        for batch in (1, 64):
            x = torch.from_numpy(rng.uniform(-1, 1, (batch, W.shape[0])).astype(np.float32))
            per_block = max(8, 65536 // (batch * W.shape[0]))
            with torch.no_grad():
                for _ in range(per_block):
                    layer(x)
                ts = []
                for _ in range(blocks):
                    t0 = time.perf_counter()
                    for _ in range(per_block):
                        layer(x)
                    ts.append((time.perf_counter() - t0) / per_block)
            out[f"{label}|{batch}"] = float(np.median(ts) * 1e6)
    except Exception as exc:
        out[f"{label}|error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
print(json.dumps(out))
"""


def aihwkit_times(W: np.ndarray) -> dict:
    """{(label, batch): µs} of aihwkit's tiles, timed in the venv given by --aihwkit-python (or in this
    interpreter if aihwkit imports here); {} if aihwkit is not available."""
    import json
    import subprocess
    import tempfile

    py = ARGS.aihwkit_python
    if py is None:
        try:
            import aihwkit  # noqa: F401
        except ImportError as exc:
            print(f"aihwkit: not importable here ({exc}); pass --aihwkit-python to time it from another venv")
            return {}
        py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        wpath = os.path.join(tmp, "W.npy")
        np.save(wpath, W)
        proc = subprocess.run(
            [py, "-c", AIHWKIT_SCRIPT, str(ARGS.threads), str(ARGS.seed), str(ARGS.blocks), wpath],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "OMP_NUM_THREADS": str(ARGS.threads)},
        )
    if proc.returncode != 0:
        print(f"aihwkit: subprocess failed: {proc.stderr.strip()[-500:]}")
        return {}
    res = {}
    for key, val in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        label, what = key.split("|")
        if what == "error":
            print(f"aihwkit {label}: not usable here ({val})")
        else:
            res[(label, int(what))] = val
    return res


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
        HERMES_NAME: PCMConfig.hermes_like(adc_range=20.0),
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
    aih = aihwkit_times(W)
    print(f"threads={ARGS.threads}, numpy {np.__version__}, torch {torch.__version__}")
    for batch in (1, 64):
        # one block spans at least one refill of our noise buffer (65536 draws)
        per_block = max(8, 65536 // (batch * n))
        x = rng.uniform(-1, 1, (batch, n)).astype(np.float32)
        xt = torch.from_numpy(x)
        fns = {
            "numpy fp32 x @ W": lambda x=x: x @ W32,
            "torch fp32 x @ W": lambda xt=xt: xt @ Wt,
        }
        for name, arr in arrays.items():
            fns[name] = lambda arr=arr, x=x: arr.mvm(x)
        res = time_interleaved(fns, ARGS.blocks, per_block)
        for (label, b), us in aih.items():
            if b == batch:
                res[f"aihwkit {label} [separate process, same load]"] = us
        plain = min(res["numpy fp32 x @ W"], res["torch fp32 x @ W"])
        aih_ref = next((us for k, us in res.items() if k.startswith("aihwkit InferenceRPUConfig")), None)
        print(f"\nbatch {batch} (µs per call: median over {ARGS.blocks} blocks of {per_block} calls)")
        for name, us in res.items():
            line = f"  {us:9.1f} µs  {us / plain:5.2f}x plain"
            if name.startswith("ours"):
                ref = aih_ref if aih_ref is not None else REF_AIHWKIT_US[batch]
                tag = "aihwkit C++ tile here" if aih_ref is not None else "aihwkit reference run"
                line += f"  {ref / us:5.1f}x faster than {tag}"
            print(f"{line}  {name}")
        if aih_ref is None:
            # conservative: aihwkit's fastest run over plain's slowest run
            ref_ratio = REF_AIHWKIT_LOW_US[batch] / REF_PLAIN_US[batch]
            print(
                f"  context only (not measured here): aihwkit C++ tile {REF_AIHWKIT_LOW_US[batch]:.0f}-"
                f"{REF_AIHWKIT_US[batch]:.0f} µs in the reference run of bench/README.md (2 torch threads), "
                f">= {ref_ratio:.1f}x "
                f"its plain x @ W.T (<= {REF_PLAIN_US[batch]:.1f} µs);"
                "\n  load-normalised speed-up vs aihwkit = that ratio / (ours / plain here):"
            )
            for name, us in res.items():
                if name.startswith("ours"):
                    print(f"    {ref_ratio / (us / plain):5.1f}x  {name}")
        pr = REF_AIHWKIT_PCM_READ_US[batch]
        print(
            f"  context: aihwkit's per-MVM read-noise tile (StandardHWATrainingPreset, PCM_READ w_noise, "
            f"C++) took >= {pr:.0f} µs in the reference run = {pr / res[HERMES_NAME]:.0f}x ours hermes_like"
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
