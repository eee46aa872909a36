"""A client node spun on a background thread, for the benches that measure the running graph over ROS 2."""

from __future__ import annotations

import threading
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
