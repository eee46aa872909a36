"""The chip in the loop at the speed of software: three ratios measured in one run.

1. learn: ``OneShotController.learn`` on the simulated chip (what ``/controller/learn_trajectory`` runs: restore
   the meta-trained weights by sparse reprogramming, training run through the chip, LSG, one natural e-prop
   update written by sparse reprogramming, test run through the chip) vs the software episode
   (``episode.one_shot``, batch 1: training run, LSG, update, test run) of the same network (the shipped
   checkpoint) and of the paper's released network (800-neuron LSG: the episode that
   bench/snn_step.py times), and vs the controller's own software path (``pcm=False``). Held-out
   trajectories, calls interleaved.
2. reprogram cost vs devices written: updates of k random weights (k from 10 to 30,000 of 63,750) on the
   controller's chip at 1 h, the sparse (incremental) ``PCMArray.reprogram`` vs the same call with the whole
   array rebuilt (``_incremental = False``, the reference the tests compare it with); a least-squares line
   time = a + b * devices for both.
3. one chip-in-the-loop meta-training iteration (``train-snn --chip-in-the-loop``: outer loss + backward at
   batch 16 with the chip's weight error, ``ChipInTheLoop.weight_error``) vs the software iteration.

Medians of CPU time (as bench/snn_step.py); every ratio compares peers measured alternately in the same
process. Run:

    tools/env.sh python bench/chip_loop.py [--repeats 30] [--meta-iterations 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pcm_l2l_ros.snn import episode, tasks  # noqa: E402
from pcm_l2l_ros.snn.controller import OneShotController  # noqa: E402
from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights, default_checkpoint_path  # noqa: E402


def _ms(fn) -> float:
    """CPU time of ``fn()`` in ms (process time, all threads: every run here is single-threaded, and on a
    shared machine CPU time is robust to preemption by other jobs, which inflates wall time)."""
    t = time.process_time()
    fn()
    return (time.process_time() - t) * 1e3


def bench_learn(w, cfg, repeats: int) -> None:
    chip = OneShotController(w, cfg, pcm=True, seed=0)
    soft = OneShotController(w, cfg, pcm=False, seed=0)
    tr = tasks.sample_trajectories(repeats + 3, 20261130, cfg, chip.kin)
    try:  # bench/snn_step.py's episode: the paper's released network (800-neuron LSG)
        w_ref = SNNWeights.reference()
    except (OSError, FileNotFoundError):
        w_ref = None
    t_chip, t_ep, t_soft, t_ref, written = [], [], [], [], []
    for i in range(repeats + 3):
        one = tr.subset(slice(i, i + 1))
        ms_ep = _ms(lambda one=one: episode.one_shot(w, one, cfg))
        ms_ref = _ms(lambda one=one: episode.one_shot(w_ref, one, SNNConfig())) if w_ref is not None else np.nan
        ms_soft = _ms(lambda one=one: soft.learn(one))
        t = time.process_time()
        r = chip.learn(one)
        ms_chip = (time.process_time() - t) * 1e3
        if i >= 3:  # the first calls load the compiled kernels
            t_chip.append(ms_chip)
            t_ep.append(ms_ep)
            t_ref.append(ms_ref)
            t_soft.append(ms_soft)
            written.append(r.devices_written)
    c, e, s, f = (float(np.median(x)) for x in (t_chip, t_ep, t_soft, t_ref))
    print(f"learn on the chip (controller, shipped checkpoint, hermes_per_column, 1 h): median {c:.2f} ms "
          f"(p90 {np.percentile(t_chip, 90):.2f}); devices written per learn (restore + update) "
          f"median {int(np.median(written))}")
    print(f"software episode, same network (episode.one_shot, batch 1):        median {e:.2f} ms")
    print(f"software episode, paper's network (800-neuron LSG, snn_step.py):    median {f:.2f} ms")
    print(f"controller's software path (pcm=False):                            median {s:.2f} ms")
    print(f"RATIO learn on chip / software episode: same network {c / e:.2f}x, paper's network {c / f:.2f}x; "
          f"/ controller software {c / s:.2f}x")


def bench_reprogram(w, cfg, repeats: int) -> None:
    base = OneShotController(w, cfg, pcm=True, seed=0).chip  # programmed, drifted to 1 h
    q = cfg.update_quantum
    rng = np.random.default_rng(0)
    rows = []
    for k in (10, 100, 300, 1000, 3000, 10000, 30000):
        t_inc, t_full, dev = [], [], []
        for rep in range(max(3, repeats // 5)):
            d = np.zeros(base.shape)
            idx = rng.choice(d.size, k, replace=False)
            d.reshape(-1)[idx] = q * rng.choice([-2.0, -1.0, 1.0, 2.0], k)
            a, b = copy.deepcopy(base), copy.deepcopy(base)
            b._incremental = False
            if rep % 2:
                ms_f, ms_i = _ms(lambda b=b, d=d: b.reprogram(d)), _ms(lambda a=a, d=d: a.reprogram(d))
            else:
                ms_i, ms_f = _ms(lambda a=a, d=d: a.reprogram(d)), _ms(lambda b=b, d=d: b.reprogram(d))
            dev.append(int(np.count_nonzero(a.write_counts != base.write_counts)))
            t_inc.append(ms_i)
            t_full.append(ms_f)
        rows.append((k, float(np.median(dev)), float(np.median(t_inc)), float(np.median(t_full))))
    print(f"\nreprogram on the controller's chip ({base.n_devices} devices), median per call:")
    print("  weights  devices written  sparse (ms)  full rebuild (ms)  full / sparse")
    for k, dev, ti, tf in rows:
        print(f"  {k:7d}  {dev:15.0f}  {ti:11.2f}  {tf:17.2f}  {tf / ti:12.1f}x")
    dev = np.array([r[1] for r in rows])
    for name, col in (("sparse", 2), ("full rebuild", 3)):
        y = np.array([r[col] for r in rows])
        b, a = np.polyfit(dev, y, 1)
        print(f"  line {name}: {a:.2f} ms + {b * 1e3:.2f} us per device written")


def bench_meta_iteration(w, cfg, iterations: int, batch: int) -> None:
    from pcm_l2l_ros.arm.kinematics import TaskKinematics  # noqa: PLC0415
    from pcm_l2l_ros.snn import metatrain as mt  # noqa: PLC0415

    kin = TaskKinematics.from_urdf()
    clock = mt.clock_tensor(cfg)
    soft = mt.NaturalEprop(cfg, w)
    hw = mt.NaturalEprop(cfg, w, chip=mt.ChipInTheLoop(seed=0))
    rng = np.random.default_rng(1)
    t_soft, t_hw, t_err = [], [], []

    def step(model):
        model.zero_grad()
        total, _, _ = mt.outer_loss(model, clock, b, kin)
        total.backward()

    for i in range(iterations + 1):
        b = mt.make_batch(batch, rng, cfg, kin)
        ms_s, ms_h = _ms(lambda: step(soft)), _ms(lambda: step(hw))
        ms_e = _ms(lambda: hw.chip.weight_error(hw.W_in_trainee, hw.W_rec_trainee, cfg))
        if i:
            t_soft.append(ms_s)
            t_hw.append(ms_h)
            t_err.append(ms_e)
    s, h, e = (float(np.median(x)) for x in (t_soft, t_hw, t_err))
    print(f"\nmeta-training iteration, batch {batch} (outer loss + backward), median of {iterations}:")
    print(f"  software {s:.0f} ms, chip in the loop {h:.0f} ms, of which the chip (program + drift to 1 h + "
          f"read the weights) {e:.1f} ms")
    print(f"RATIO chip-in-the-loop iteration / software iteration = {h / s:.3f}x (chip share {e / h:.1%})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--meta-iterations", type=int, default=3, help="0 skips the meta-training iteration")
    p.add_argument("--meta-batch", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(1)
    w, cfg = SNNWeights.load(default_checkpoint_path())
    bench_learn(w, cfg, args.repeats)
    bench_reprogram(w, cfg, args.repeats)
    if args.meta_iterations > 0:
        bench_meta_iteration(w, cfg, args.meta_iterations, args.meta_batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
