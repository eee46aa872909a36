"""A client node spun on a background thread, for the benches that measure the running graph over ROS 2."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def spinning_node(name: str) -> Iterator[Any]:
    """``with spinning_node("x_bench") as node: ...``: rclpy initialised, ``node`` spun by a SingleThreadedExecutor
    on a daemon thread; on exit the executor is stopped before the node and the context go away (otherwise the
    C++ side aborts at exit)."""
    import rclpy  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    rclpy.init()
    node = rclpy.create_node(name)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        yield node
    finally:
        ex.shutdown()
        spinner.join(timeout=10.0)
        node.destroy_node()
        rclpy.try_shutdown()


def timed_call(client: Any, request: Any, timeout: float = 60.0) -> tuple[float, Any]:
    """Send ``request`` with ``client`` (its node spun elsewhere) and wait; returns (round trip ms, response)."""
    done = threading.Event()
    t = time.perf_counter()
    fut = client.call_async(request)
    fut.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        raise TimeoutError(client.srv_name)
    return (time.perf_counter() - t) * 1e3, fut.result()
