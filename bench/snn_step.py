"""Trainee step time and one-shot episode time: our Numba kernels vs snnTorch RLeaky and Norse LIFRecurrent.

Same network and same run for every implementation: the paper's trainee (250 LIF neurons, the released weights
W_in 5x250, W_rec 250x250 with the diagonal zeroed (no autapses), W_out 250x2), driven by the 5-neuron clock
for 249 steps, batch 1, CPU, 1 thread, forward only (no autograd graph). alpha = kappa = exp(-1/20), v_th 0.6,
reset by subtraction, leaky readout to 2 outputs.

* ours: ``pcm_l2l_ros.snn.lif.run_trainee`` (event-driven Numba kernel), with the paper's refractory period
  (n_ref 5) and, for a spike-for-spike comparison with snnTorch (which has no refractory period), n_ref 1;
* snnTorch ``RLeaky`` (all-to-all recurrent Linear, reset by subtraction) + ``Linear`` input and readout;
* Norse ``LIFRecurrent`` (whole sequence in one call). Norse is continuous-time (current-based, reset to
  zero); its weights are scaled so the membrane sees the same input, but the spike counts differ: only
  its cost is comparable.

Episode: training run with e-prop traces + LSG (800 neurons) + the one update (GEMM) + test run, batch 1,
``pcm_l2l_ros.snn.episode.one_shot``. Compile time: first call in a fresh process with an empty Numba cache
(JIT compile of every kernel), and with the cache warm (cache load), both in subprocesses.

Run (peers live in a separate venv, our package from the source tree; how to build that venv on a fresh
machine: bench/README.md), from the repository root::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .bench-venvs/snn/bin/python bench/snn_step.py

With only the project venv, the peers are skipped.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from pcm_l2l_ros.snn import episode, tasks  # noqa: E402
from pcm_l2l_ros.snn.lif import run_trainee  # noqa: E402
from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights  # noqa: E402

CFG = SNNConfig()


def timeit(fn, repeats: int, warmup: int = 2) -> tuple[float, float, object]:
    """(median CPU s, median wall s, last result) of ``repeats`` calls after ``warmup`` calls; the minimum CPU
    time is kept in ``LAST_MIN_CPU``.

    CPU time is the process time (all threads; the runs are single-threaded): on a shared machine it is
    robust to preemption by other jobs, which inflates the wall time.
    """
    for _ in range(warmup):
        out = fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    global LAST_MIN_CPU
    LAST_MIN_CPU = float(np.min(cpu))
    return float(np.median(cpu)), float(np.median(wall)), out


LAST_MIN_CPU = float("nan")


def compile_times() -> dict[str, float]:
    """First-call times of the kernels in fresh subprocesses: empty Numba cache (compile) and warm cache."""
    code = (
        "import time, numpy as np\n"
        "t0 = time.perf_counter()\n"
        "from pcm_l2l_ros.snn import episode, tasks\n"
        "from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights\n"
        "t1 = time.perf_counter()\n"
        "cfg = SNNConfig(); w = SNNWeights.reference()\n"
        "tr = tasks.TrajectoryBatch(np.zeros((1, 249, 2)), np.zeros((1, 249, 2)), np.zeros((1, 249, 3)),"
        " np.zeros(1, bool))\n"
        "t2 = time.perf_counter(); episode.one_shot(w, tr, cfg); t3 = time.perf_counter()\n"
        "print(t1 - t0, t3 - t2)\n"
    )
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        for label in ("cold", "warm"):
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            imp, first = (float(v) for v in r.stdout.split())
            out[label] = first
            out[f"import_{label}"] = imp
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--no-compile", action="store_true", help="skip the compile-time subprocesses")
    args = p.parse_args(argv)

    w = SNNWeights.reference()
    W_in, W_out = w.W_in_trainee, w.W_out_trainee
    W_rec = w.W_rec_trainee.copy()
    np.fill_diagonal(W_rec, 0.0)
    x = tasks.clock_input(CFG, np.float32)
    T, N = x.shape[0], CFG.n_trainee
    results: dict[str, float] = {}
    walls: dict[str, float] = {}
    spikes: dict[str, int] = {}

    import numba

    print(
        f"trainee: N={N}, T={T} steps, batch 1, clock input; numpy {np.__version__}, numba {numba.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )

    for name, cfg in (
        ("ours (numba, n_ref=5, paper)", CFG),
        ("ours (numba, n_ref=1, no refractory)", CFG.replace(n_ref=1)),
    ):
        med, wall, run = timeit(lambda cfg=cfg: run_trainee(x, W_in, W_rec, W_out, cfg), args.repeats)
        results[name], walls[name] = med, wall
        spikes[name] = int(run.z.sum())
    med, wall, run = timeit(lambda: run_trainee(x, W_in, W_rec, W_out, CFG, record_eprop=True), args.repeats)
    results["ours (numba, n_ref=5, + e-prop traces)"] = med
    walls["ours (numba, n_ref=5, + e-prop traces)"] = wall
    spikes["ours (numba, n_ref=5, + e-prop traces)"] = int(run.z.sum())

    # ------------------------------------------------------------------------------------------ peers
    try:
        import torch

        torch.set_num_threads(1)
        Xt = torch.from_numpy(x)
        Wi, Wr, Wo = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (W_in, W_rec, W_out))
        alpha, kappa = math.exp(-1 / 20), math.exp(-1 / 20)
    except ImportError:
        torch = None
        print("torch not importable: peers skipped")

    if torch is not None:
        try:
            import snntorch as snn

            fc = torch.nn.Linear(5, N, bias=False)
            lif = snn.RLeaky(
                beta=alpha, threshold=CFG.v_th_trainee, linear_features=N, all_to_all=True, reset_mechanism="subtract"
            )
            ro = torch.nn.Linear(N, 2, bias=False)
            with torch.no_grad():
                fc.weight.copy_(Wi.T)
                lif.recurrent.weight.copy_(Wr.T)
                ro.weight.copy_(Wo.T)
                if lif.recurrent.bias is not None:
                    lif.recurrent.bias.zero_()

            def run_snntorch():
                with torch.no_grad():
                    spk, mem = lif.init_rleaky()
                    y = torch.zeros(1, 2)
                    n = 0.0
                    for t in range(T):
                        spk, mem = lif(fc(Xt[t : t + 1]), spk, mem)
                        y = kappa * y + ro(spk)
                        n += float(spk.sum())
                return int(n)

            name = f"snnTorch {snn.__version__} RLeaky + Linear"
            med, wall, n = timeit(run_snntorch, max(3, args.repeats // 4), warmup=1)
            results[name], walls[name], spikes[name] = med, wall, n
        except ImportError:
            print("snntorch not importable: skipped")
        try:
            import norse
            import norse.torch as nt

            p_ = nt.LIFParameters(
                tau_mem_inv=torch.tensor(1000.0 / CFG.tau_m_ms),
                tau_syn_inv=torch.tensor(1000.0),
                v_th=torch.tensor(CFG.v_th_trainee),
                v_reset=torch.tensor(0.0),
            )
            rec = nt.LIFRecurrent(5, N, p=p_, dt=1e-3, autapses=False)
            ro2 = torch.nn.Linear(N, 2, bias=False)
            with torch.no_grad():
                rec.input_weights.copy_(Wi.T * CFG.tau_m_ms)
                rec.recurrent_weights.copy_(Wr.T * CFG.tau_m_ms)
                ro2.weight.copy_(Wo.T)

            def run_norse():
                with torch.no_grad():
                    z, _ = rec(Xt[:, None, :])
                    y = torch.zeros(1, 2)
                    for t in range(T):
                        y = kappa * y + ro2(z[t])
                return int(z.sum())

            name = f"Norse {getattr(norse, '__version__', '?')} LIFRecurrent (whole sequence)"
            med, wall, n = timeit(run_norse, max(3, args.repeats // 4), warmup=1)
            results[name], walls[name], spikes[name] = med, wall, n
        except ImportError:
            print("norse not importable: skipped")

    ref = results["ours (numba, n_ref=5, paper)"]
    print(
        f"\n{'implementation (CPU time; wall time in brackets)':58s} {'run (ms)':>9s} {'per step (us)':>14s} "
        f"{'wall/step':>10s} {'spikes':>7s} {'x ours':>8s}"
    )
    for name, med in results.items():
        print(
            f"{name:58s} {med * 1e3:9.3f} {med / T * 1e6:14.2f} {walls[name] / T * 1e6:10.2f} {spikes[name]:7d} "
            f"{med / ref:8.1f}"
        )
    snt = [k for k in results if k.startswith("snnTorch")]
    if snt:
        print(
            f"\nratio snnTorch / ours per step: {results[snt[0]] / ref:.0f}x (target >= 50x); spike counts "
            f"snnTorch {spikes[snt[0]]} vs ours without refractory period "
            f"{spikes['ours (numba, n_ref=1, no refractory)']}"
        )

    # ------------------------------------------------------------------------------------------ episode
    tr = tasks.sample_trajectories(1, 0, CFG, tasks.default_kinematics(paper=True), mode="resample")
    train = episode.training_run(w, CFG)
    for label, kw in (
        ("one-shot episode (train run + LSG + update + test run)", {}),
        ("  same, update rounded to 1/16", {"quantum": 1 / 16}),
    ):
        med, wall, _ = timeit(lambda kw=kw: episode.one_shot(w, tr, CFG, **kw), args.repeats)
        print(
            f"{label:58s} CPU {med * 1e3:7.2f} ms  (min {LAST_MIN_CPU * 1e3:5.2f}; wall {wall * 1e3:7.2f} ms)  "
            "target <= 5 ms"
        )
    parts = {
        "training run + traces": lambda: episode.training_run(w, CFG),
        "LSG run (800 neurons)": lambda: episode.learning_signals("natural", w, tr, train, CFG),
        "test run": lambda: run_trainee(x, W_in, w.W_rec_trainee, W_out, CFG),
    }
    for label, fn in parts.items():
        med, wall, _ = timeit(fn, args.repeats)
        print(f"  {label:56s} CPU {med * 1e3:7.2f} ms  (min {LAST_MIN_CPU * 1e3:5.2f}; wall {wall * 1e3:7.2f} ms)")

    if not args.no_compile:
        ct = compile_times()
        print(
            f"\nfirst episode in a fresh process: {ct['cold']:.2f} s with an empty Numba cache (JIT compile), "
            f"{ct['warm']:.2f} s with the cache warm; package import {ct['import_cold']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
