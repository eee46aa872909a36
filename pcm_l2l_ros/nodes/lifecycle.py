"""Managed (lifecycle) nodes: the node side (:class:`ManagedNode`) and the manager side (:class:`LifecycleManager`).

A managed node is an ``rclpy.lifecycle.LifecycleNode`` with the standard state machine and services
(``<node>/change_state``, ``<node>/get_state``, ... of ``lifecycle_msgs``, and ``<node>/transition_event``):

=============  ==========================================================================================
transition     what :class:`ManagedNode` does (a subclass fills in the hooks)
=============  ==========================================================================================
configure      ``configure_node()``: load checkpoints, program the chip, start worker threads. An exception
               is logged as one line (``configure failed: ...``), whatever was built is released, the
               transition fails and the node stays ``unconfigured`` (``last_error`` holds the reason).
activate       ``activate_node()``: start serving / commanding
deactivate     ``deactivate_node()``: stop serving (the controller: a zero command first)
cleanup        ``release_node()``: drop everything ``configure`` built (back to ``unconfigured``)
shutdown       ``deactivate_node()`` if active, then ``release_node()`` (-> ``finalized``)
on error       ``release_node()`` (an exception in another transition): back to ``unconfigured``
=============  ==========================================================================================

Parameters are declared and validated in the constructor, before any state changes (an invalid one stops the
node at start-up, ``nodes/common.py``). The ``autostart`` parameter (default false) makes ``run_node`` bring the
node up to ``active`` by itself, for use without a lifecycle manager; the graph runner (``nodes/runner.py``) and
the launch files (launch_ros ``LifecycleNode`` + transition events) leave it false and drive the transitions.

:class:`LifecycleManager` drives other processes' nodes over DDS with the standard services (the runner's
``SubprocessGraph`` and the tests use it).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from pcm_l2l_ros.nodes.common import declare_validated, freeze_long_lived
from pcm_l2l_ros.nodes.service_call import RESEND_S, call_service, longer_patience

#: primary states (lifecycle_msgs/msg/State labels) from which a ``shutdown`` transition exists
PRIMARY_STATES = ("unconfigured", "inactive", "active")
#: transition label -> id (lifecycle_msgs/msg/Transition); ``shutdown`` is resolved from the current state
TRANSITION_IDS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "cleanup": Transition.TRANSITION_CLEANUP,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
}
#: transition label -> the primary state it leads to when it succeeds
TRANSITION_GOALS = {
    "configure": "inactive",
    "cleanup": "unconfigured",
    "activate": "active",
    "deactivate": "inactive",
    "shutdown": "finalized",
}
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ManagedNode(LifecycleNode):
    """A lifecycle node whose transitions call four hooks (see the module docstring); ``kwargs`` go to
    ``LifecycleNode``. Subclasses declare their parameters in ``__init__`` (after ``super().__init__``) and
    override ``configure_node``, ``activate_node``, ``deactivate_node`` and ``release_node``."""

    def __init__(self, node_name: str, **kwargs):
        self._destroyed_in: tuple[int, str] | None = None  # the last state, once destroy_node has run
        super().__init__(node_name, **kwargs)
        self.last_error = ""  # why the last configure/activate failed ("" if it did not)
        self.autostart = bool(
            declare_validated(
                self,
                "autostart",
                False,
                "configure and activate at start-up without a lifecycle manager (false: "
                "start unconfigured and wait for the lifecycle transitions)",
                lambda v: None if isinstance(v, bool) else "must be true or false",
                read_only=True,
            )
        )

    # ------------------------------------------------------------------------------------------------ state
    @property
    def lifecycle_state(self) -> str:
        """Label of the current state: ``unconfigured``, ``inactive``, ``active``, ``finalized`` or a transition
        state (``configuring``, ...)."""
        return self._current_state()[1]

    @property
    def is_active(self) -> bool:
        return self._current_state()[0] == State.PRIMARY_STATE_ACTIVE

    def _current_state(self) -> tuple[int, str]:
        if self._destroyed_in is not None:  # the state machine is gone (reading it would crash)
            return self._destroyed_in
        sid, label = self._state_machine.current_state
        return int(sid), str(label)

    def bring_up(self) -> None:
        """Configure and activate in this process (``autostart``, the in-process graph); raises ``RuntimeError``
        with the reason if a transition fails (the node is then left ``unconfigured``)."""
        for name, trigger in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
            if trigger() != SUCCESS:
                raise RuntimeError(f"{name} failed: {self.last_error or 'see the log'}")

    def destroy_node(self) -> None:
        """``Node.destroy_node``, then the lifecycle state machine: rclpy 9.1.2 leaves it alive, and with it the
        node and its DDS participant (the process then leaves its Fast DDS shared-memory files behind)."""
        self._destroyed_in = self._current_state()
        super().destroy_node()
        self._state_machine.destroy_when_not_in_use()

    # ------------------------------------------------------------------------------------------------ hooks
    def configure_node(self) -> None:
        """Build what serving needs (checkpoints, chip, workers); raise to refuse the transition."""

    def activate_node(self) -> None:
        """Start serving."""

    def deactivate_node(self) -> None:
        """Stop serving (the built state stays)."""

    def release_node(self, shutting_down: bool = False) -> None:
        """Drop what ``configure_node`` built; must work on a partly configured node and be idempotent.
        ``shutting_down``: the node is being finalized (do not wait long for anything)."""

    # ------------------------------------------------------------------------------------------ transitions
    def _run(self, what: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
            return True
        except Exception as e:  # noqa: BLE001 - a failed transition is reported, the node lives on
            self.last_error = f"{type(e).__name__}: {e}"
            self.get_logger().error(f"{what} failed: {self.last_error}")
            return False

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.last_error = ""
        t0 = time.perf_counter()
        if not self._run("configure", self.configure_node):
            self._run("release after the failed configure", self.release_node)
            return FAILURE
        freeze_long_lived()  # the models and chips just built live until cleanup: no full-collection pauses
        self.get_logger().info(f"configured in {time.perf_counter() - t0:.1f} s")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # lifecycle publishers first
        if ret != SUCCESS or not self._run("activate", self.activate_node):
            return FAILURE
        self.get_logger().info("active")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ok = self._run("deactivate", self.deactivate_node)
        ret = super().on_deactivate(state)
        self.get_logger().info("inactive")
        return ret if ok else FAILURE

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        ok = self._run("cleanup", self.release_node)
        gc.unfreeze()  # what configure froze may now be garbage, cycles included: visible to the collector again
        gc.collect()
        ret = super().on_cleanup(state)
        self.get_logger().info("cleaned up (unconfigured)")
        return ret if ok else FAILURE

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.state_id == State.PRIMARY_STATE_ACTIVE:
            self._run("deactivate before the shutdown", self.deactivate_node)
        self._run("shutdown", lambda: self.release_node(shutting_down=True))
        super().on_shutdown(state)
        return SUCCESS  # finalized whatever happened: nothing is left to retry

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._run("release after an error", self.release_node)
        super().on_error(state)
        return SUCCESS  # -> unconfigured


class LifecycleManager:
    """Drives managed nodes of other processes over DDS with ``<node>/change_state`` and ``<node>/get_state``.

    ``node`` is any rclpy node of the caller; ``spin(timeout_s)`` spins the caller's executor once (the
    manager calls it while it waits, so the executor must not be spun by another thread meanwhile).

    A lost answer is survived (Fast DDS drops the first answers to a new client when the server has not yet
    matched it, :mod:`pcm_l2l_ros.nodes.service_call`; right after a node's process started this is likely): a
    ``get_state`` still unanswered after ``resend_s`` s is sent again, with doubling patience, and a transition
    still unanswered then is settled by asking the node's state (:meth:`change_state`).
    """

    def __init__(self, node, spin: Callable[[float], None], resend_s: float = RESEND_S):
        self.node, self._spin, self.resend_s = node, spin, float(resend_s)
        self._clients: dict[tuple[str, str], object] = {}

    def _client(self, target: str, kind: str):
        key = (target, kind)
        if key not in self._clients:
            srv = ChangeState if kind == "change_state" else GetState
            self._clients[key] = self.node.create_client(srv, f"{_fqn(target)}/{kind}")
        return self._clients[key]

    def _wait_ready(self, client, deadline: float, allowed_s: float, alive: Callable[[], bool] | None) -> None:
        """Wait (until ``deadline``, monotonic s; ``allowed_s`` s from the call) for ``client``'s service."""
        while not client.service_is_ready():
            self._check(client, deadline, alive, f"did not appear within {allowed_s:g} s")
            self._spin(0.05)

    def _wait(
        self, client, future, until: float, deadline: float, allowed_s: float, alive: Callable[[], bool] | None
    ) -> bool:
        """Spin until ``future`` is done (True) or ``until`` passes (False); errors past ``deadline``."""
        while not future.done():
            if time.monotonic() > until:
                return False
            self._check(client, deadline, alive, f"no answer within {allowed_s:g} s")
            self._spin(0.05)
        return True

    @staticmethod
    def _check(client, deadline: float, alive: Callable[[], bool] | None, what: str) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.srv_name}: {what}")
        if alive is not None and not alive():
            raise RuntimeError(f"the process of {client.srv_name} ended")

    def get_state(self, target: str, timeout_s: float = 10.0, alive: Callable[[], bool] | None = None) -> str:
        """Label of ``target``'s current state."""
        deadline = time.monotonic() + timeout_s
        client = self._client(target, "get_state")
        self._wait_ready(client, deadline, timeout_s, alive)
        res = call_service(
            client,
            GetState.Request(),
            lambda f, until: self._wait(client, f, until, deadline, timeout_s, alive),
            deadline,
            self.resend_s,
        )
        if res is None:
            raise TimeoutError(f"{client.srv_name}: no answer within {timeout_s:g} s")
        return str(res.current_state.label)

    def change_state(
        self, target: str, transition: str, timeout_s: float = 10.0, alive: Callable[[], bool] | None = None
    ) -> bool:
        """Request the transition ``transition`` (``configure``, ``activate``, ``deactivate``, ``cleanup``,
        ``shutdown``); returns whether the node reports success.

        The request is sent once (a transition is not idempotent). If its answer has not come after
        ``resend_s`` s, the node's state is asked: the state the transition leads to means success (the
        answer was lost); a transition state (``configuring``, ...) means wait on; the state it started from,
        seen twice with the answer still missing, means the transition failed (the failure's answer was lost).
        """
        if transition == "shutdown":  # one label, three transitions: the node resolves it from its state
            req = ChangeState.Request(transition=Transition(label="shutdown"))
        elif transition in TRANSITION_IDS:
            req = ChangeState.Request(transition=Transition(id=TRANSITION_IDS[transition]))
        else:
            raise ValueError(f"unknown transition {transition!r}; one of {[*TRANSITION_IDS, 'shutdown']}")
        deadline = time.monotonic() + timeout_s
        client = self._client(target, "change_state")
        self._wait_ready(client, deadline, timeout_s, alive)
        future = client.call_async(req)
        unchanged, patience = 0, self.resend_s
        try:
            while not self._wait(
                client, future, min(deadline, time.monotonic() + patience), deadline, timeout_s, alive
            ):
                state = self.get_state(target, max(0.1, deadline - time.monotonic()), alive)
                if state == TRANSITION_GOALS[transition]:
                    return True
                if state in PRIMARY_STATES:  # not in a transition: the one asked for failed or is still queued
                    unchanged += 1
                    if unchanged >= 2:
                        return False
                patience = longer_patience(patience, self.resend_s)
            return bool(future.result().success)
        finally:
            if not future.done():
                client.remove_pending_request(future)

    def bring_up(self, target: str, timeout_s: float = 180.0, alive: Callable[[], bool] | None = None) -> None:
        """Take ``target`` to ``active`` from wherever it is (configure if unconfigured, then activate); raises
        ``RuntimeError`` if a transition fails and ``TimeoutError`` after ``timeout_s`` s in all."""
        deadline = time.monotonic() + timeout_s
        left = lambda: max(0.1, deadline - time.monotonic())  # noqa: E731
        state = self.get_state(target, left(), alive)
        if state == "unconfigured":
            if not self.change_state(target, "configure", left(), alive):
                raise RuntimeError(f"{target}: configure failed (see its log)")
            state = "inactive"
        if state == "inactive" and not self.change_state(target, "activate", left(), alive):
            raise RuntimeError(f"{target}: activate failed (see its log)")
        state = self.get_state(target, left(), alive)
        if state != "active":
            raise RuntimeError(f"{target} is '{state}', not active")

    def close(self) -> None:
        for c in self._clients.values():
            self.node.destroy_client(c)
        self._clients.clear()


def _fqn(name: str) -> str:
    return name if name.startswith("/") else f"/{name}"
