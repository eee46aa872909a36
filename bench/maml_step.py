"""MAML meta-iterations per second: ours vs a straightforward per-task ``torch.autograd.grad`` MAML.

Same network (the paper's CNN, 56 channels), same task size, same meta-batch, same second-order readout-only
inner loop (4 delta-rule steps, lr 0.1), same outer step (Adam), CPU, one thread, in one run:

* ours: ``pcm_l2l_ros.vision.maml.MetaTrainer.step`` — the meta-batch's tasks stacked, the network run
  per task set with the native batch norm (``model.features``), the inner loop as batched matrix products
  with the delta rule's closed-form gradient, one backward;
* ours before (the shipped models were trained with it): the same step with all task sets in one tensor
  and the per-task BatchNorm written as reshapes + mean/var (``model.conv_block`` + ``batch_norm_groups``);
* peer: the learn2learn way — for each task: features of its support and query set (the network written
  plainly: conv, ReLU, ``F.batch_norm`` with batch statistics, max-pool), a readout clone adapted with
  ``torch.autograd.grad(..., create_graph=True)`` of the support loss, the query loss; the tasks' losses
  averaged, one backward, Adam.

Both compute the same meta-gradient (checked here on one batch before timing). Run from the repository root::

    tools/env.sh python bench/maml_step.py [--reps 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pcm_l2l_ros.vision import model as M  # noqa: E402
from pcm_l2l_ros.vision.maml import MetaTrainer, TrainSettings, task_losses  # noqa: E402
from pcm_l2l_ros.vision.omniglot import load_split  # noqa: E402

torch.set_num_threads(1)


def plain_features(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The network as one writes it for one task: conv (pad 1, stride 2), ReLU, BatchNorm (no affine, batch
    statistics), global max-pool; x (n, 1, 28, 28) -> (n, channels)."""
    for name in M.CONV_NAMES:
        x = F.batch_norm(F.relu(F.conv2d(x, params[name], stride=2, padding=1)), None, None, training=True,
                         eps=1e-3)
    return x.amax(dim=(2, 3))


def per_task_loss(params: dict[str, torch.Tensor], batch, cfg: M.CNNConfig) -> torch.Tensor:
    """The peer: one task at a time, inner loop through ``torch.autograd.grad`` (create_graph=True)."""
    losses = []
    for t in range(batch.support_x.shape[0]):
        xs = M.prepare_input(batch.support_x[t], cfg)[:, None]
        xq = M.prepare_input(batch.query_x[t], cfg)[:, None]
        ys = torch.as_tensor(batch.support_y[t], dtype=torch.long)
        yq = torch.as_tensor(batch.query_y[t], dtype=torch.long)
        hs, hq = plain_features(params, xs), plain_features(params, xq)
        w = params["readout"]
        for _ in range(cfg.inner_steps):
            (g,) = torch.autograd.grad(F.cross_entropy(hs @ w, ys), w, create_graph=True)
            w = w - cfg.inner_lr * g
        losses.append(F.cross_entropy(hq @ w, yq))
    return torch.stack(losses).mean()


def reshape_features(params: dict[str, torch.Tensor], x: torch.Tensor, cfg: M.CNNConfig) -> torch.Tensor:
    """``model.features`` as it was: all groups in one tensor, BatchNorm per group through reshapes."""
    g, n = x.shape[:2]
    y = x.reshape(g * n, 1, *x.shape[2:])
    for name in M.CONV_NAMES:
        y = M.batch_norm_groups(M.conv_block(params, y, name, cfg), g, cfg.bn_eps)
    return y.amax(dim=(2, 3)).reshape(g, n, -1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--settings", default="5w5s:16,20w1s:4,20w5s:4", help="<N>w<K>s:META_BATCH,...")
    args = ap.parse_args()
    bg = load_split("background").images
    print(f"CPU threads 1; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    print(f"{'setting':<8} {'batch':>5} {'ours it/s':>10} {'peer it/s':>10} {'ratio':>6} {'before it/s':>11} "
          f"{'speedup':>8}  max |grad diff| ours-peer")
    for item in args.settings.split(","):
        setting, mb = item.split(":")
        ways, shots = (int(v) for v in setting.rstrip("s").split("w"))
        s = TrainSettings(ways=ways, shots=(shots,), queries=5 if ways == 5 else 3, meta_batch=int(mb),
                          monitor_every=0, seed=1)
        tr = MetaTrainer(s, tempfile.mkdtemp(prefix="pcm_l2l_bench_maml_"), bg)
        # same meta-gradient on the same batch (check before timing)
        batch = tr.samplers[shots].sample_batch(np.random.default_rng(0), s.meta_batch)
        g1 = torch.autograd.grad(task_losses(tr.params, batch, tr.cfg)[0], list(tr.params.values()))
        g2 = torch.autograd.grad(per_task_loss(tr.params, batch, tr.cfg), list(tr.params.values()))
        diff = max(float((a - b).abs().max()) for a, b in zip(g1, g2, strict=True))

        def ours(tr=tr):
            tr.step()

        def before(tr=tr):
            features = M.features
            M.features = reshape_features
            try:
                tr.step()
            finally:
                M.features = features

        opt = torch.optim.Adam(list(tr.params.values()), lr=1e-3)

        def peer(tr=tr, shots=shots, s=s, opt=opt):
            b = tr.samplers[shots].sample_batch(tr.rng, s.meta_batch)
            opt.zero_grad()
            per_task_loss(tr.params, b, tr.cfg).backward()
            opt.step()

        fns = {"ours": ours, "before": before, "peer": peer}
        times: dict[str, list[float]] = {k: [] for k in fns}
        for fn in fns.values():  # warm-up
            fn()
        for _ in range(args.reps):  # interleaved: all see the same machine state
            for name, fn in fns.items():
                t0 = time.process_time()
                fn()
                times[name].append(time.process_time() - t0)
        r = {k: 1 / float(np.median(v)) for k, v in times.items()}
        print(f"{setting:<8} {s.meta_batch:>5} {r['ours']:>10.2f} {r['peer']:>10.2f} {r['ours'] / r['peer']:>5.2f}x "
              f"{r['before']:>10.2f} {r['ours'] / r['before']:>7.2f}x  {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
