"""What limits the one-shot update on a task family: the learning-signal generator, or what one update can do?

For targets of one family (software, float update) three updates are compared on the same trainee:

* ``LSG``: the meta-trained learning-signal generator's signals L(t) (what the controller does);
* ``oracle L``: the learning signals themselves optimised per target (Adam through the test run, from the LSG's
  signals), the eligibility traces of the one training run kept: the best any LSG could do with one natural
  e-prop update (Bellec et al. 2020, Scherr et al. 2020);
* ``oracle dW``: the update itself optimised per target (full rank, from the LSG's update): what the trainee can
  represent after one change of its plastic weights.

If the oracle L reaches far below the LSG, the learning-signal generator is what limits the family (more or
different meta-training), not the update rule or the trainee. Families with a ``size_fraction`` (strokes, arcs,
closed curves) are also split by size into thirds (the same number of targets from each).

Usage:  tools/env.sh python tools/snn_oracle_signal.py --family stroke --n 45 --steps 150
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcm_l2l_ros.snn import families, tasks  # noqa: E402
from pcm_l2l_ros.snn import metatrain as MT  # noqa: E402
from pcm_l2l_ros.snn.params import SNNWeights, default_checkpoint_path  # noqa: E402


def pick_targets(tr: tasks.TrajectoryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of n targets (n // 3 from each size third when the family has a size) and their third (0-2)."""
    first = tr.info[0] if tr.info is not None and len(tr.info) else None
    if not isinstance(first, dict) or "size_fraction" not in first:  # e.g. Brownian targets: no size
        return np.arange(n), np.full(n, -1)
    size = np.array([d["size_fraction"] for d in tr.info], float)
    order = np.argsort(size, kind="stable")
    k, m = n // 3, len(tr)
    idx = np.concatenate([order[i * m // 3 : i * m // 3 + k] for i in range(3)])
    return idx, np.repeat(np.arange(3), k)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="SNN checkpoint (default: the shipped snn_l2l)")
    p.add_argument("--family", default="stroke", help=f"one of {', '.join(families.FAMILIES)}")
    p.add_argument("--n", type=int, default=45, help="targets (drawn from 3 * n held-out ones, 3 to 300)")
    p.add_argument("--seed", type=int, default=555, help="held-out target stream of the family")
    p.add_argument("--steps", type=int, default=150, help="Adam steps of each oracle (1 to 2000)")
    p.add_argument("--lr-factor", type=float, default=0.05, help="Adam step, times the mean |start value|")
    p.add_argument("--report-every", type=int, default=50)
    a = p.parse_args(argv)
    if a.family not in families.FAMILIES:
        p.error(f"--family must be one of {', '.join(families.FAMILIES)}")
    if not 3 <= a.n <= 300 or not 1 <= a.steps <= 2000 or not a.lr_factor > 0:
        p.error("--n must be in 3..300, --steps in 1..2000, --lr-factor > 0")
    torch.manual_seed(0)
    w, cfg = SNNWeights.load(a.checkpoint or default_checkpoint_path())
    kin = tasks.default_kinematics(paper=False)
    pool = families.sample_family(a.family, 3 * a.n, families.family_rng(a.family, a.seed), cfg, kin)
    idx, third = pick_targets(pool, a.n)
    targets = pool.subset(idx)
    model = MT.NaturalEprop(cfg, w)
    model.requires_grad_(False)
    X = MT.clock_tensor(cfg)
    batch = MT.batch_from(targets, cfg)
    with torch.no_grad():
        tr = model.training_run(X, model.W_in_trainee, model.W_rec_trainee)
        L0, _ = model.lsg_run(batch.X_lsg)

    def test_run(dW_in: torch.Tensor, dW_rec: torch.Tensor) -> torch.Tensor:
        z, _, _ = model.trainee_run(X, model.W_in_trainee + dW_in, model.W_rec_trainee + dW_rec * model.mask_tr)
        return model.readout(z).transpose(0, 1)  # (B, T, 2) rad/s

    def report(name: str, omega: torch.Tensor) -> None:
        xyz = tasks.forward_xyz(omega.detach().double().numpy(), kin, cfg)
        err = 100.0 * tasks.ee_distance(xyz, targets.xyz).mean(axis=1)  # cm
        by_size = (
            ""
            if third[0] < 0
            else "  by size third " + " / ".join(f"{np.median(err[third == k]):.2f}" for k in range(3))
        )
        print(f"{name:30s} median {np.median(err):.2f} cm  p90 {np.quantile(err, 0.9):.2f}{by_size}", flush=True)

    print(f"{a.family}: {len(targets)} held-out targets (seed {a.seed}), one update, software")
    with torch.no_grad():
        report("LSG (meta-trained)", test_run(*model.update_from_signals(tr, L0)))
    start_dw = model.update_from_signals(tr, L0)
    for name, start in (("oracle L", [L0]), ("oracle dW", list(start_dw))):
        var = [s.clone().requires_grad_(True) for s in start]
        opt = torch.optim.Adam(var, lr=a.lr_factor * float(start[-1].abs().mean()))

        def update(var: list[torch.Tensor] = var, name: str = name) -> tuple[torch.Tensor, torch.Tensor]:
            return model.update_from_signals(tr, var[0]) if name == "oracle L" else (var[0], var[1])

        for s in range(a.steps):
            opt.zero_grad()
            omega = test_run(*update())
            xyz = tasks.forward_xyz(omega, kin, cfg)
            loss = tasks.loss_terms(omega, batch.omega, xyz, batch.xyz)[0] * len(targets)  # sum over targets
            loss.backward()
            opt.step()
            if (s + 1) % a.report_every == 0 or s + 1 == a.steps:
                with torch.no_grad():
                    report(f"{name}, {s + 1} Adam steps", test_run(*update()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
