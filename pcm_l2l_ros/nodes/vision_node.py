"""Vision node: few-shot classification on the simulated PCM chip (``/pcm_l2l/classify``).

A FewShotClassify request carries a support set (images + labels 0..N-1) and query images. The node
validates it (encodings mono8/mono16/32FC1/rgb8/bgr8, any size 8..1024 px resized to 28 x 28, labels
consistent, every class present, N <= the largest model's ways, sizes capped), picks the meta-trained CNN
with enough ways (5-way for N <= 5, else 20-way), adapts a *fork* of its readout on the chip (delta rule,
sparse reprogramming; the shared meta-trained chip state is never modified by a request), classifies the
queries and answers labels, probabilities (queries x N, row-major), devices written and timings. A bad
request gets ``success=false`` and a message; nothing a request contains can stop the node.

Bounded work per request: every count, label, size and range is checked against its cap *before* any
allocation that depends on it (labels < the largest model's ways, ``max_images`` images, each image's
header consistent with its data, ``max_total_pixels`` pixels in all, ``max_inner_steps``, ``max_chip_images``
images read through the chip, ``shift_px``'s copies included), so a request's memory and time are bounded
whatever it contains. Requests are computed on ``workers`` worker threads (each
with its own copies of the programmed chips), never on the executor thread; at most ``max_pending`` are
queued or running, more are refused at once with ``busy``.

Managed node (``nodes/lifecycle.py``): it starts ``unconfigured`` (unless ``autostart``); ``configure`` loads
the checkpoint(s), programs the chip and starts the worker threads (seconds); ``activate`` starts serving;
``deactivate`` stops serving; ``cleanup`` / ``shutdown`` stop the workers and drop the chips. The service exists
in every state: while the node is not active a request is answered at once with ``success=false`` and a
message starting ``inactive:`` (a request accepted while active is still answered after a ``deactivate``).

Diagnostics (``nodes/diagnostics.py``): every ``diagnostics_period_s`` (1 s) one item "vision: few-shot
classification" on ``/diagnostics`` with the lifecycle state, requests served / rejected (invalid, busy,
inactive) / failed, the request latency p50/p99 over the last ``LATENCY_WINDOW`` served requests (from receipt
to answer, queue included) and, once configured, the models, the chip's devices, total writes, max writes per
device against the endurance limit, and the drift times. Writes are write pulses since programming, with the
readout writes of every served request added up as on a physical readout that serves them all (the
simulation adapts a fork per request). OK while serving; WARN when not active, on busy refusals since the last
report, or above 80 % of the endurance; ERROR on failed requests since the last report, a dead worker thread,
or a device at its endurance limit.

Drift: the chip is programmed once at configure; a request's ``drift_time_s`` selects the simulated time
since programming (each distinct time is a drifted copy of the programmed chip, cached, so requests do not
disturb each other). BatchNorm uses the queries' own statistics when there are at least
``min_transductive_queries`` queries, else the support set's.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import numpy as np
from pcm_l2l_interfaces.srv import FewShotClassify

from pcm_l2l_ros.compute_threads import limit_compute_threads
from pcm_l2l_ros.nodes.common import (
    WorkerPool,
    declare_validated,
    float_range,
    int_range,
    limit_heap_growth,
    run_node,
)
from pcm_l2l_ros.nodes.diagnostics import DiagnosticsPublisher, LatencyWindow, Status, add_chip_wear
from pcm_l2l_ros.nodes.image_codec import ImageError, check_header, images_to_input
from pcm_l2l_ros.nodes.lifecycle import ManagedNode
from pcm_l2l_ros.vision.shifts import MAX_SHIFT_PX, n_copies

MAX_DRIFT_S = 10 * 365.25 * 86400.0
LATENCY_WINDOW = 1000   # requests over which /diagnostics gives the latency p50/p99


class RequestError(ValueError):
    """The request is malformed (the message says why)."""


class VisionNode(ManagedNode):
    """See the module docstring; ``kwargs`` go to ``LifecycleNode.__init__``."""

    def __init__(self, **kwargs):
        super().__init__("vision", **kwargs)
        from pcm_l2l_ros.pcm import PRESET_NAMES  # noqa: PLC0415

        is_path = lambda v: None if isinstance(v, str) else "must be a path (empty = shipped model)"  # noqa: E731
        self.paths = {5: declare_validated(self, "checkpoint_5way", "", "5-way CNN checkpoint (.npz + .json); empty "
                                           "= the package's models/cnn_5way.npz", is_path, read_only=True),
                      20: declare_validated(self, "checkpoint_20way", "", "20-way CNN checkpoint; empty = "
                                            "models/cnn_20way.npz (optional: N > 5 is refused without it)", is_path,
                                            read_only=True)}
        self.preset = declare_validated(self, "pcm.preset", "hermes_per_column", "PCM chip, a name of pcm.presets "
                                        "(old name hermes_like = hermes_per_column)",
                                        lambda v: None if v in PRESET_NAMES else
                                        f"must be one of {', '.join(PRESET_NAMES)}", read_only=True)
        self.pcm_enabled = declare_validated(self, "pcm.enabled", True, "run the CNN on the simulated PCM chip "
                                             "(false: the same code with every non-ideality off)", read_only=True)
        self.seed = declare_validated(self, "pcm.seed", 0, "seed of the device noise", int_range(0, 2**31 - 1),
                                      read_only=True)
        self.max_images = declare_validated(self, "max_images", 400, "cap on support + query images per request",
                                            int_range(2, 5000), read_only=True)
        self.max_total_pixels = declare_validated(self, "max_total_pixels", 8 * 1024 * 1024, "cap on the pixels "
                                                  "(height x width summed over support + query images) per request",
                                                  int_range(64, 64 * 1024 * 1024), read_only=True)
        self.n_workers = declare_validated(self, "workers", 2, "worker threads computing requests (each holds its "
                                           "own copies of the programmed chips)", int_range(1, 16), read_only=True)
        self.max_pending = declare_validated(self, "max_pending", 8, "requests queued or running at most; more are "
                                             "refused at once (busy)", int_range(1, 1000), read_only=True)
        self.shift_px = declare_validated(self, "shift_px", 0, "test-time shift augmentation: support and query "
                                          "images also as copies shifted by up to this many pixels (0..2: 1, 9 or "
                                          "25 reads of each image; 0 = the paper's protocol)",
                                          int_range(0, MAX_SHIFT_PX), read_only=True)
        self.max_chip_images = declare_validated(self, "max_chip_images", 5000, "cap on the images read through "
                                                 "the chip per request, shifted copies included",
                                                 int_range(2, 50000), read_only=True)
        self.max_inner_steps = declare_validated(self, "max_inner_steps", 20, "cap on inner_steps per request",
                                                 int_range(1, 1000), read_only=True)
        self.min_transductive = declare_validated(self, "min_transductive_queries", 5, "fewest queries for "
                                                  "query-set BatchNorm statistics (else support statistics)",
                                                  int_range(1, 10000), read_only=True)
        self.cache_size = declare_validated(self, "drift_cache_size", 4, "drifted chip copies kept",
                                            int_range(1, 64), read_only=True)
        self.warm_times = declare_validated(self, "warm_drift_times_s", [3600.0], "drift times prepared at "
                                            "configure (s), so the first request at them is fast",
                                            lambda v: None if isinstance(v, (list, tuple)) and all(
                                                isinstance(t, (int, float)) and 0 <= t <= MAX_DRIFT_S for t in v)
                                            else "must be a list of drift times in s", read_only=True)
        self.compute_threads = declare_validated(self, "compute_threads", 1, "threads of the chip simulation: torch "
                                                 "intra-op and the BLAS pools (1: no oversubscription of the cores "
                                                 "shared with the ROS executor and other processes)",
                                                 int_range(1, 64), read_only=True)
        diag_period = declare_validated(self, "diagnostics_period_s", 1.0, "period of the status on /diagnostics "
                                        "(s)", float_range(0.0, 60.0, lo_open=True), read_only=True)
        # built by configure, dropped by cleanup/shutdown
        self.chips: dict[int, Any] = {}
        self._drifted: dict[str, dict[int, OrderedDict]] = {}   # per worker thread: ways -> drift -> chip
        self._lock = threading.Lock()
        self.pool: WorkerPool | None = None
        self.worker_pools: list[WorkerPool] = []
        # the service exists in every state; it computes only while active (``_on_request``)
        holder: dict[str, Any] = {}
        self._srv = self.create_service(FewShotClassify, "/pcm_l2l/classify",
                                        lambda req, resp: self._on_request(holder["send"], req, resp))
        WorkerPool.attach(self._srv, holder)
        # /diagnostics in every state (nodes/diagnostics.py): counters since start, latency of the last 1,000
        self.counts = dict.fromkeys(("served", "invalid", "busy", "inactive", "failed"), 0)
        self._reported = dict(self.counts)   # the counts at the previous report (WARN/ERROR on what is new)
        self.latency = LatencyWindow(LATENCY_WINDOW)
        self._wear: dict[int, np.ndarray] = {}   # per model: write pulses per readout device, requests included
        self._conv_pulses, self._conv_max, self._endurance, self._last_drift_s = 0, 0, None, None
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics, diag_period)
        self.get_logger().info("unconfigured: configure loads the models and programs the chip"
                               + (" (autostart)" if self.autostart else ""))

    # ----------------------------------------------------------------------------------------------- lifecycle
    def configure_node(self) -> None:
        """Load the checkpoint(s), program them onto the simulated chip, start the workers and warm them up."""
        from pcm_l2l_ros.vision.deploy import FewShotChip, chip_configs  # noqa: PLC0415
        from pcm_l2l_ros.vision.model import load_model, shipped_model_path  # noqa: PLC0415

        limit_compute_threads(self.compute_threads)
        pcm_cfg = chip_configs(self.preset if self.pcm_enabled else "ideal")  # stochastic readout rounding
        self.get_logger().info("programming the meta-trained CNN(s) onto the simulated PCM chip ...")
        chips = {}
        for ways, path in self.paths.items():
            p = path or str(shipped_model_path(ways))
            try:
                params, cfg, _ = load_model(p)
            except Exception as e:  # noqa: BLE001 - reported; the 5-way model is required below
                if path or ways == 5:
                    raise RuntimeError(f"cannot load the {ways}-way CNN checkpoint {p}: {e}") from e
                self.get_logger().warning(f"no {ways}-way model ({e}); requests with N > 5 will be refused")
                continue
            chips[ways] = FewShotChip(params, cfg, pcm_cfg, rng=np.random.default_rng(self.seed + ways))
        with self._lock:
            self.chips = chips
            self._wear = {w: c.readout.write_counts.copy() for w, c in chips.items()}
            convs = [a for c in chips.values() for a in c.convs.values()]
            self._conv_pulses = sum(int(a.write_counts.sum()) for a in convs)
            self._conv_max = max(int(a.write_counts.max()) for a in convs)
            self._endurance = pcm_cfg.endurance_writes
        limit_heap_growth()
        self.pool = WorkerPool("classify", workers=self.n_workers, max_pending=self.max_pending,
                               logger=self.get_logger())
        self.worker_pools = [self.pool]
        self.pool.run_on_each(self._warm_up)  # on the threads that serve: the first request is not slower
        self.get_logger().info(f"models {sorted(self.chips)}-way on "
                               f"{self.preset if self.pcm_enabled else 'ideal (PCM off)'}"
                               + (f", test-time shifts of up to {self.shift_px} px ({n_copies(self.shift_px)} reads "
                                  f"per image)" if self.shift_px else ""))

    def _warm_up(self, worker: str) -> None:
        """On worker thread ``worker``: decode a synthetic request's images (105 x 105 mono8, the Omniglot size; as
        many as a 20-way 5-shot support set, so the thread's decode buffer already has the size requests need)
        and run every chip through the request path at every prepared drift time (``FewShotChip.warm_up``: noise
        rewound, the answers of later requests unchanged)."""
        blank = np.full((105, 105), 255, np.uint8)
        blank[40:60, 30:80] = 0   # some ink
        msg = SimpleNamespace(height=105, width=105, encoding="mono8", is_bigendian=0, step=105, data=blank.tobytes())
        images_to_input([msg] * 100)
        for ways in self.chips:
            for t_s in self.warm_times:
                self._chip(ways, float(t_s), worker).warm_up()

    def release_node(self, shutting_down: bool = False) -> None:
        """Stop the workers (after the requests already accepted; at most 5 s, 0.2 s when shutting down) and
        drop the programmed chips and their drifted copies."""
        pool, self.pool, self.worker_pools = self.pool, None, []
        if pool is not None and not pool.close(0.2 if shutting_down else 5.0):
            self.get_logger().warning("a worker is still computing a request; it ends when that is answered")
        with self._lock:
            self.chips, self._drifted, self._wear = {}, {}, {}

    def _on_request(self, send, request: FewShotClassify.Request, response: FewShotClassify.Response):
        """The service callback (executor thread): queue the request to the workers while active, else refuse."""
        pool = self.pool
        if not self.is_active or pool is None:
            self._count("inactive")
            response.success = False
            response.message = (f"inactive: the vision node is {self.lifecycle_state}; it serves only when active "
                                f"(lifecycle transitions configure, activate)")
            return response
        t_received = time.perf_counter()
        out = pool.defer(send, lambda req, resp: self._on_classify(req, resp, t_received), request, response)
        if out is response:   # refused at once: the queue is full
            self._count("busy")
        return out

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    # ------------------------------------------------------------------------------------------------ requests
    def _on_classify(self, request: FewShotClassify.Request, response: FewShotClassify.Response,
                     t_received: float | None = None):
        """Validate and compute one request (on a worker thread; the chips used are the thread's own).
        ``t_received``: ``perf_counter`` when the executor received it (the latency includes the queue)."""
        t0 = time.perf_counter()
        if not self.chips:   # cleaned up while the request was queued
            self._count("inactive")
            response.success, response.message = False, "inactive: the vision node was cleaned up"
            return response
        try:
            sy, ways, steps, drift = self._validate(request)
            chip = self._chip(ways, drift)
            chip.prefetch_noise(n_copies(self.shift_px)   # drawn while we decode
                                * (len(request.support_images) + len(request.query_images)))
            sx, qx = self._decode(request)
            bn = "transductive" if len(qx) >= self.min_transductive else "support"
            res = chip.adapt_and_classify(sx, sy, qx, inner_steps=steps, rng=np.random.default_rng(),
                                          bn_stats=bn, track_steps=False, shift_px=self.shift_px)
            probs = np.asarray(res.probs, dtype=np.float64)[:, :ways]   # classes beyond N are not in the task
            probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-30)
            if not np.all(np.isfinite(probs)):
                raise RuntimeError("non-finite probabilities")
        except RequestError as e:
            self._count("invalid")
            response.success, response.message = False, str(e)
            self.get_logger().warning(f"classify refused: {e}")
            return response
        except Exception as e:  # noqa: BLE001 - the node must survive anything a request triggers
            self._count("failed")
            response.success, response.message = False, f"classification failed: {type(e).__name__}: {e}"
            self.get_logger().error(response.message)
            return response
        with self._lock:   # the wear a physical readout accumulates over requests (the simulation forks it)
            wear = self._wear.get(chip.ways)
            if wear is not None and res.readout_pulses is not None:
                wear += res.readout_pulses
            self.counts["served"] += 1
            self._last_drift_s = drift
        response.success = True
        response.labels = [int(v) for v in probs.argmax(axis=1)]
        response.probabilities = probs.astype(np.float32).ravel().tolist()
        response.devices_written = int(res.devices_written)
        response.devices_written_distinct = int(res.devices_written_distinct)
        response.devices_total = int(chip.device_counts()["total"])
        response.adapt_time_s = float(res.timings.get("adapt", 0.0))
        response.total_time_s = time.perf_counter() - t0
        self.latency.add(time.perf_counter() - (t0 if t_received is None else t_received))
        return response

    # --------------------------------------------------------------------------------------------- diagnostics
    def _diagnostics(self) -> list[Status]:
        """The node's /diagnostics item (executor thread, every ``diagnostics_period_s``)."""
        state = self.lifecycle_state
        st = Status(f"{self.get_name()}: few-shot classification", ok_message="serving",
                    hardware_id=f"simulated PCM chip ({self.preset if self.pcm_enabled else 'ideal'})")
        st.add("lifecycle state", state)
        if state != "active":
            st.warn(f"not serving ({state})")
        with self._lock:
            counts, new = dict(self.counts), {k: v - self._reported[k] for k, v in self.counts.items()}
            self._reported = dict(self.counts)
            models = sorted(self.chips)
            devices = sum(int(c.device_counts()["total"]) for c in self.chips.values())
            readout_pulses = sum(int(w.sum()) for w in self._wear.values())
            readout_max = max((int(w.max()) for w in self._wear.values()), default=0)
            last_drift = self._last_drift_s
        st.add("requests served", counts["served"])
        st.add("requests rejected", counts["invalid"] + counts["busy"] + counts["inactive"])
        st.add("rejected: invalid", counts["invalid"])
        st.add("rejected: busy", counts["busy"])
        st.add("rejected: inactive", counts["inactive"])
        st.add("requests failed", counts["failed"])
        if new["busy"]:
            st.warn(f"{new['busy']} requests refused as busy since the last report")
        if new["failed"]:
            st.error(f"{new['failed']} requests failed since the last report (see the log)")
        self.latency.add_to(st, "request latency")
        if self.pool is not None and not self.pool.alive():
            st.error("a worker thread has died")
        if models:   # configured: the programmed chip
            st.add("models", ", ".join(f"{w}-way" for w in models))
            add_chip_wear(st, devices, self._conv_pulses + readout_pulses, max(self._conv_max, readout_max),
                          self._endurance)
            st.add("drift times prepared (s)", [float(t) for t in self.warm_times] or "none")
            st.add("test-time shifts (px)", self.shift_px)
            if last_drift is not None:
                st.add("drift time of the last request (s)", float(last_drift))
        return [st]

    def _validate(self, req):
        ns, nq = len(req.support_images), len(req.query_images)
        if ns == 0 or nq == 0:
            raise RequestError("support_images and query_images must both be non-empty")
        if ns + nq > self.max_images:
            raise RequestError(f"{ns + nq} images exceed the cap of {self.max_images} per request")
        if (ns + nq) * n_copies(self.shift_px) > self.max_chip_images:
            raise RequestError(f"{ns + nq} images x {n_copies(self.shift_px)} shifted copies (shift_px "
                               f"{self.shift_px}) exceed the cap of {self.max_chip_images} chip reads per request")
        if len(req.support_labels) != ns:
            raise RequestError(f"{len(req.support_labels)} support_labels for {ns} support_images")
        labels = np.asarray(req.support_labels, dtype=np.int64)
        if labels.min() < 0:
            raise RequestError("support_labels must be >= 0")
        largest = max(self.chips)
        if labels.max() >= largest:   # before anything is sized by the labels
            raise RequestError(f"support_labels must be < {largest} (the largest model is {largest}-way); got "
                               f"{int(labels.max())}")
        ways = int(labels.max()) + 1
        present = np.bincount(labels, minlength=ways)
        if np.any(present == 0):
            missing = np.flatnonzero(present == 0).tolist()
            raise RequestError(f"labels must be 0..N-1 with every class present; missing {missing}")
        if ways < 2:
            raise RequestError("need at least 2 classes")
        if not any(w >= ways for w in self.chips):
            raise RequestError(f"{ways} classes exceed the largest model ({max(self.chips)}-way)")
        steps = int(req.inner_steps)
        if steps < 0 or steps > self.max_inner_steps:
            raise RequestError(f"inner_steps must be in [0, {self.max_inner_steps}] (0 = model default)")
        drift = float(req.drift_time_s)
        if not math.isfinite(drift) or drift < 0 or drift > MAX_DRIFT_S:
            raise RequestError(f"drift_time_s must be finite and in [0, {MAX_DRIFT_S:.3g}] s")
        try:   # every header (size, encoding, step, data length) before any pixel is decoded
            pixels = sum(check_header(int(m.height), int(m.width), str(m.encoding), int(m.step), len(m.data))
                         for m in (*req.support_images, *req.query_images))
        except ImageError as e:
            raise RequestError(f"bad image: {e}") from e
        if pixels > self.max_total_pixels:
            raise RequestError(f"{pixels} pixels in all exceed the cap of {self.max_total_pixels} per request")
        return labels, ways, (steps or None), drift

    @staticmethod
    def _decode(req) -> tuple[np.ndarray, np.ndarray]:
        """The support and query images of a request whose headers ``_validate`` accepted, as the CNN's input."""
        try:
            return images_to_input(req.support_images), images_to_input(req.query_images)
        except ImageError as e:
            raise RequestError(f"bad image: {e}") from e

    def _chip(self, ways: int, drift_s: float, worker: str | None = None):
        """The programmed chip of the smallest model with >= ``ways`` classes, drifted to ``drift_s``: the copy
        of thread ``worker`` (default: the calling thread), so concurrent requests never share a chip."""
        model_ways = min(w for w in self.chips if w >= ways)
        worker = worker or threading.current_thread().name
        with self._lock:
            per_worker = self._drifted.setdefault(worker, {w: OrderedDict() for w in self.chips})
        cache = per_worker[model_ways]
        key = round(drift_s, 6)
        if key not in cache:
            chip = copy.deepcopy(self.chips[model_ways])
            chip.drift(drift_s)
            cache[key] = chip
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]


def main(args=None) -> int:
    return run_node(VisionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
