"""Teach by demonstration: record the arm's own joint positions and turn the recording into a learnable target.

A user moves the arm by hand (a real arm in gravity-compensation / teach mode) or replays a recorded trajectory
on it, while :class:`DemonstrationRecorder` collects the learned joints' positions (rad) with their stamps (s) from
the joint-state stream. The recording starts at home (the trainee's trajectories start at home, 0 rad), lasts at
most the trainee's duration (249 steps x 0.01 s = 2.49 s) and stops on request or when that window is full. The
result is a list of (time since the start, positions) samples that the one-shot controller resamples to its
10 ms grid (linear interpolation, the last position held to the end) and learns in one update
(:meth:`pcm_l2l_ros.snn.controller.OneShotController.target_from_samples`).

ROS-free (numbers in, numbers out); ``nodes/controller_node.py`` feeds it from ``/joint_states``. Memory is bounded
by ``max_samples`` whatever the stream's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the recorder never holds more samples than this (a 1 kHz joint-state stream fills 2.49 s with 2,490)
DEFAULT_MAX_SAMPLES = 10_000


class DemonstrationError(ValueError):
    """The demonstration cannot be recorded or learned (the message says why)."""


@dataclass(frozen=True)
class Demonstration:
    """A finished recording: ``times_s`` (m,) since the start (the first is 0), ``positions`` (m, 2) in rad of the
    learned joints, and why it ended (``"stop"`` requested, ``"window"`` full)."""

    times_s: np.ndarray
    positions: np.ndarray
    ended_by: str

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1])

    @property
    def samples(self) -> int:
        return int(self.times_s.size)


class DemonstrationRecorder:
    """Collects (stamp, positions) samples of the learned joints between :meth:`start` and :meth:`stop`.

    ``window_s`` (s): the recording ends by itself once a sample is at least this long after the first one;
    at most ``max_window_s`` (the trainee's duration). ``home_tolerance_rad``: the first sample must be this close
    to home (0 rad) in every learned joint. Samples whose stamp does not increase are dropped (counted in
    ``dropped``); non-finite positions raise. Not thread-safe: the node calls it under its own lock.
    """

    def __init__(
        self, max_window_s: float, home_tolerance_rad: float, max_samples: int = DEFAULT_MAX_SAMPLES, n_joints: int = 2
    ):
        if not (math.isfinite(max_window_s) and max_window_s > 0):
            raise ValueError(f"max_window_s must be a positive number of seconds, got {max_window_s}")
        if not (math.isfinite(home_tolerance_rad) and home_tolerance_rad >= 0):
            raise ValueError(f"home_tolerance_rad must be >= 0, got {home_tolerance_rad}")
        if not (2 <= int(max_samples) <= 1_000_000):
            raise ValueError(f"max_samples must be in 2..1,000,000, got {max_samples}")
        self.max_window_s = float(max_window_s)
        self.home_tolerance_rad = float(home_tolerance_rad)
        self.n_joints = int(n_joints)
        self._times = np.zeros(int(max_samples))
        self._q = np.zeros((int(max_samples), self.n_joints))
        self._n = 0
        self._window_s = self.max_window_s
        self._t0: float | None = None
        self.recording = False
        self.dropped = 0
        self.finished: Demonstration | None = None

    # ------------------------------------------------------------------------------------------------ control
    def start(self, window_s: float = 0.0) -> None:
        """Begin a recording of at most ``window_s`` s (0 = the longest, ``max_window_s``); a previous unfinished
        recording is discarded. The first sample that arrives is the start (it must be at home)."""
        if not math.isfinite(window_s) or window_s < 0 or window_s > self.max_window_s + 1e-9:
            raise DemonstrationError(
                f"window_s must be in [0, {self.max_window_s:.2f}] s (0 = {self.max_window_s:.2f} s), got {window_s}"
            )
        self._window_s = float(window_s) if window_s > 0 else self.max_window_s
        self._n, self._t0, self.dropped, self.finished = 0, None, 0, None
        self.recording = True

    def cancel(self) -> None:
        """Discard the recording (nothing is learned)."""
        self.recording, self._n, self._t0, self.finished = False, 0, None, None

    def add(self, stamp_s: float, positions) -> bool:
        """One joint-state sample (stamp in s, positions of the learned joints in rad). Returns True when this
        sample completed the window (the recording is then finished). Ignored when not recording."""
        if not self.recording:
            return False
        q = np.asarray(positions, dtype=np.float64).reshape(-1)
        if q.size != self.n_joints or not np.all(np.isfinite(q)) or not math.isfinite(stamp_s):
            raise DemonstrationError(f"a sample needs {self.n_joints} finite positions and a finite stamp")
        if self._t0 is None:
            if np.any(np.abs(q) > self.home_tolerance_rad):
                self.cancel()
                raise DemonstrationError(
                    f"the demonstration must start at home (within {self.home_tolerance_rad} rad of 0); the arm is at "
                    f"{np.round(q, 4).tolist()} rad: move it home first"
                )
            self._t0 = float(stamp_s)
        t = float(stamp_s) - self._t0
        if self._n and t <= self._times[self._n - 1]:
            self.dropped += 1
            return False
        if t > self._window_s + 1e-9:  # past the window: end at the window (this sample is not kept)
            self._finish("window")
            return True
        if self._n == self._times.size:
            self._finish("window")  # buffer full (only with a stream far faster than 1 kHz)
            return True
        self._times[self._n], self._q[self._n] = t, q
        self._n += 1
        if t >= self._window_s - 1e-9:
            self._finish("window")
            return True
        return False

    def stop(self) -> Demonstration:
        """End the recording now (or return the one the window already ended); raises when it is too short."""
        if self.finished is not None:
            return self.finished
        if not self.recording:
            raise DemonstrationError("no demonstration is being recorded (start one first)")
        return self._finish("stop")

    def _finish(self, why: str) -> Demonstration:
        self.recording = False
        n = self._n
        if n < 2 or self._times[n - 1] <= 0:
            self._n, self._t0 = 0, None
            raise DemonstrationError(
                f"the demonstration has {n} joint-state sample(s) spanning "
                f"{self._times[n - 1] if n else 0.0:.3f} s: need at least 2 samples over > 0 s "
                "(is /joint_states being published?)"
            )
        self.finished = Demonstration(times_s=self._times[:n].copy(), positions=self._q[:n].copy(), ended_by=why)
        return self.finished

    @property
    def elapsed_s(self) -> float:
        """Time covered by the samples so far, s."""
        return float(self._times[self._n - 1]) if self._n else 0.0


#: how far (fraction of the limit) the recording's velocity may exceed the arm's velocity limit and still be learned
#: (clipped to the limit): a real arm cannot move faster than its limit, so such an excess is sampling noise of the
#: joint-state stream (stamps and positions taken at slightly different times)
VELOCITY_EXCESS_TOLERANCE = 0.10


def on_trainee_grid(demo: Demonstration, dt_s: float, steps: int, vmax_rad_s) -> tuple[np.ndarray, np.ndarray]:
    """The demonstration as the trainee's target: (times (steps,) in s = dt, 2 dt, ..., positions (steps, n) in rad).

    Positions are taken relative to the first sample (the arm was within the home tolerance there, so the target
    starts exactly at home instead of with a jump), linearly interpolated on the grid and held after the last
    sample. Per-step velocities above ``vmax_rad_s`` (per joint) by at most :data:`VELOCITY_EXCESS_TOLERANCE` are
    clipped to the limit and the positions re-integrated; a larger excess raises :class:`DemonstrationError`.
    """
    t = np.asarray(demo.times_s, dtype=np.float64)
    q = np.asarray(demo.positions, dtype=np.float64) - demo.positions[0]
    grid = dt_s * np.arange(1, int(steps) + 1)
    qg = np.stack([np.interp(grid, t, q[:, j]) for j in range(q.shape[1])], axis=1)
    omega = np.diff(np.concatenate([np.zeros((1, q.shape[1])), qg]), axis=0) / dt_s
    vmax = np.broadcast_to(np.asarray(vmax_rad_s, dtype=np.float64), (q.shape[1],))
    excess = np.abs(omega).max(axis=0) / vmax
    if np.any(excess > 1.0 + VELOCITY_EXCESS_TOLERANCE):
        raise DemonstrationError(
            f"the demonstration moves at up to {np.abs(omega).max(axis=0).round(3).tolist()} rad/s, more than "
            f"{1 + VELOCITY_EXCESS_TOLERANCE:.2f} x the velocity limit {vmax.tolist()} rad/s: demonstrate it slower"
        )
    omega = np.clip(omega, -vmax, vmax)
    return grid, np.cumsum(omega, axis=0) * dt_s
