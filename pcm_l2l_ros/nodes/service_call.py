"""Service calls that survive a lost answer.

Fast DDS drops a service's answer when the server has not yet matched the client's response reader:
``rmw_send_response`` waits 100 ms for it, then gives up and the server logs "failed to send response (timeout):
client will not receive response" (ros2/rmw_fastrtps#706, ros2/rclcpp#2760). It happens to the first requests of
a new client, most often while the server's process is busy (starting up, a loaded machine), and the client then
waits for its whole timeout. An *idempotent* request (a state query, a classification) can simply be sent again;
:func:`call_service` does that after :data:`RESEND_S` s of silence, with doubling patience, and takes the first
answer to any copy. A request with effects (a transition, a weight update) must not be sent twice: its caller
settles a missing answer another way (``LifecycleManager.change_state`` asks the node's state).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

#: s of silence after which an idempotent request is sent again; the patience doubles after each copy, up to
#: MAX_PATIENCE_S
RESEND_S, MAX_PATIENCE_S = 3.0, 24.0


def longer_patience(patience: float, resend_s: float) -> float:
    """The wait after ``patience`` s of silence: twice as long, at most :data:`MAX_PATIENCE_S` (or ``resend_s``)."""
    return min(2.0 * patience, max(MAX_PATIENCE_S, resend_s))


def call_service(
    client, request, wait_done: Callable[[Any, float], bool], deadline: float, resend_s: float | None = RESEND_S
) -> Any | None:
    """Send ``request`` on ``client`` (its service must be ready) and return the first answer to any copy, or None
    if none came by ``deadline`` (``time.monotonic()`` s). An idempotent request gets a copy after ``resend_s`` s
    of silence, the next after twice that, ... (:func:`longer_patience`); ``resend_s=None``: a request with
    effects, sent once.

    ``wait_done(future, until)`` waits the caller's way (spinning its executor, or :func:`wait_on_event` while
    another thread spins) until ``future`` is done (True) or ``until`` (monotonic s) passes (False); it may raise
    to abort (the pending copies are then withdrawn)."""
    futures: list = []
    patience = math.inf if resend_s is None else float(resend_s)
    try:
        while True:
            futures.append(client.call_async(request))
            wait_done(futures[-1], min(deadline, time.monotonic() + patience))
            answered = [f for f in futures if f.done()]
            if answered:
                return answered[0].result()
            if resend_s is None or time.monotonic() >= deadline:
                return None  # a request with effects is never sent twice
            patience = longer_patience(patience, resend_s)
    finally:
        for f in futures:
            if not f.done():
                client.remove_pending_request(f)


def wait_on_event(future, until: float) -> bool:
    """A ``wait_done`` for callers whose executor another thread spins: block until ``future`` is done (True) or
    ``until`` (monotonic s) passes (False)."""
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    return future.done() or done.wait(max(0.0, until - time.monotonic()))
