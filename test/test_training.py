"""The resumable-training helper shared by train-snn, train-cnn and pretrain-cnn (pcm_l2l_ros/training.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import time

import numpy as np
import pytest
import torch

from pcm_l2l_ros.checkpoint import torch_load
from pcm_l2l_ros.training import (
    add_deadline_arguments,
    deadline_from_args,
    drop_rows_after,
    parse_until_utc,
    save_state,
    stop_on_signals,
)


class _FailsHalfway:
    """Pickling this raises after the state before it has been written to the file."""

    def __reduce__(self):
        raise RuntimeError("disk full")


def test_atomic_save_keeps_the_old_state_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "state.pt"
    save_state({"iteration": 1, "w": torch.arange(4.0), "rng": np.arange(3)}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        save_state({"iteration": 2, "w": torch.zeros(100_000), "bad": _FailsHalfway()}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]  # no temporary file left behind
    assert path.read_bytes() == before
    st = torch_load(path)  # weights_only, as the trainers load it
    assert st["iteration"] == 1 and torch.equal(st["w"], torch.arange(4.0))
    np.testing.assert_array_equal(st["rng"], np.arange(3))
    save_state({"iteration": 3}, path)
    assert torch_load(path)["iteration"] == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_resume_drops_the_csv_rows_after_the_saved_step(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,loss,val_x\r\n1,0.5,\r\n2,0.4,0.3\r\n3,0.35,\r\n4,0.3,\r\n")
    drop_rows_after(path, "iteration", 2)  # the file's own columns (train-snn: a run keeps its CSV's columns)
    assert path.read_bytes() == b"iteration,loss,val_x\r\n1,0.5,\r\n2,0.4,0.3\r\n"
    drop_rows_after(path, "iteration", 1, ["iteration", "loss", "acc"])  # the trainer's current columns
    assert path.read_bytes() == b"iteration,loss,acc\r\n1,0.5,\r\n"
    drop_rows_after(tmp_path / "none.csv", "iteration", 1)  # a run without a CSV yet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # the handler runs in the main thread at the next bytecode boundary


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_requests_a_stop_then_a_second_one_interrupts_and_handlers_are_restored(sig):
    before = signal.getsignal(sig)
    with stop_on_signals() as stop:
        assert not stop.requested
        stop.check()  # nothing requested: no-op
        _deliver(sig)
        assert stop.requested and stop.signum == sig
        with pytest.raises(KeyboardInterrupt):
            stop.check()  # what the trainer calls between two steps
        with pytest.raises(KeyboardInterrupt):
            _deliver(sig)  # a second signal stops at once
    assert signal.getsignal(sig) is before
    with pytest.raises(KeyboardInterrupt), stop_on_signals():  # restored also when the block is left by it
        _deliver(signal.SIGTERM)
        _deliver(signal.SIGTERM)
    assert signal.getsignal(sig) is before


def test_sigterm_mid_step_stops_at_the_step_boundary_and_resumes_exactly(tmp_path):
    """The first SIGTERM arrives in the middle of an iteration: the iteration completes, the state saved is a
    step boundary's (parameters, Adam, Generator), and the resumed run equals an uninterrupted one."""
    from pcm_l2l_ros.vision.maml import MetaTrainer, TrainSettings
    from pcm_l2l_ros.vision.omniglot import load_split

    imgs = load_split("evaluation").images[:60]
    s = TrainSettings(
        ways=5, shots=(1, 2), queries=1, meta_batch=2, iterations=4, seed=5, ckpt_every=100, monitor_every=0
    )
    a = MetaTrainer(s, tmp_path / "a", imgs)
    a.train(4, progress=False)

    b = MetaTrainer(s, tmp_path / "b", imgs)
    adam_step = b.opt.step

    def adam_step_with_sigterm(*a, **kw):  # iteration 2, after its tasks were drawn, before the update
        if b.iteration == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return adam_step(*a, **kw)

    b.opt.step = adam_step_with_sigterm
    with stop_on_signals() as stop:
        assert b.train(4, progress=False, stop=stop) == 2  # iteration 2 completed, then the stop
    assert torch_load(tmp_path / "b" / "state.pt")["iteration"] == 2
    c = MetaTrainer(s, tmp_path / "b", imgs, resume=True)
    c.train(4, progress=False)
    for k, v in a.numpy_params().items():
        np.testing.assert_array_equal(v, c.numpy_params()[k])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_deadline_arguments(p)
    return p


def test_deadline_parsing():
    now = dt.datetime(2026, 11, 30, 14, 30, 20, tzinfo=dt.UTC)
    assert parse_until_utc("15:10", now) == dt.datetime(2026, 11, 30, 15, 10, tzinfo=dt.UTC).timestamp()
    assert parse_until_utc("14:00", now) == dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC).timestamp()  # tomorrow
    assert parse_until_utc("0:05", now) == dt.datetime(2026, 12, 1, 0, 5, tzinfo=dt.UTC).timestamp()
    for bad in ("24:00", "12:60", "1510", "ab:cd", "12:30:00", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_until_utc(bad, now)

    t = now.timestamp()
    assert deadline_from_args(_parser().parse_args([]), t) is None
    assert deadline_from_args(_parser().parse_args(["--until-utc", "15:10"]), t) == t + 39 * 60 + 40
    # the deprecated alias (train-snn's former option): seconds from the start
    assert deadline_from_args(_parser().parse_args(["--time-limit", "600"]), t) == t + 600
    assert (
        deadline_from_args(_parser().parse_args(["--time-limit", "5400", "--until-utc", "15:10"]), t)
        == t + 39 * 60 + 40
    )  # the earlier one
    with pytest.raises(SystemExit):
        _parser().parse_args(["--until-utc", "25:00"])  # refused when parsed, not when training starts
    assert "--time-limit" not in _parser().format_help() and "--until-utc" in _parser().format_help()
