"""Parameter descriptors over real DDS (issue #17, item 5): the three nodes, each in its own process, answer
``~/describe_parameters`` with their ranges (``FloatingPointRange`` / ``IntegerRange``) and read-only flags, as
``ros2 param describe`` shows them; an out-of-range or read-only change is refused before anything changes."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
from conftest import call_service, spin_until  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters  # noqa: E402

STARTUP_S = 120.0
NODES = {
    "sim": "pcm_l2l_ros.nodes.sim_node",
    "controller": "pcm_l2l_ros.nodes.controller_node",
    "vision": "pcm_l2l_ros.nodes.vision_node",
}
#: node -> parameter -> (range kind, from, to, read_only); spot checks of what the nodes declare
EXPECTED = {
    "sim": {
        "rate_hz": ("float", 0.0, 1000.0, True),
        "time_step_s": ("float", 0.0, 0.05, True),
        "command_timeout_s": ("float", 0.0, 60.0, False),
        "position_gain": ("float", 0.0, 1.0, True),
        "max_trajectory_points": ("int", 2, 1_000_000, True),
    },
    "controller": {
        "watchdog_timeout_s": ("float", 0.0, 10.0, True),
        "status_rate_hz": ("float", 0.0, 1000.0, True),
        "pcm.drift_time_s": ("float", 0.0, 10 * 365.25 * 86400.0, True),
        "max_target_points": ("int", 2, 1_000_000, True),
        "pcm.seed": ("int", 0, 2**31 - 1, True),
        "compute_threads": ("int", 1, 64, True),
    },
    "vision": {
        "max_images": ("int", 2, 5000, True),
        "max_inner_steps": ("int", 1, 1000, True),
        "workers": ("int", 1, 16, True),
        "pcm.seed": ("int", 0, 2**31 - 1, True),
    },
}


def _double(name: str, value: float) -> Parameter:
    return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))


@pytest.fixture
def three_nodes(no_shm_leak, node_process, ros_node):
    procs = {name: node_process(module) for name, module in NODES.items()}
    node, ex = ros_node
    clients = {}
    for name, proc in procs.items():
        clients[name] = {
            kind: node.create_client(srv, f"/{name}/{kind}")
            for kind, srv in (
                ("describe_parameters", DescribeParameters),
                ("list_parameters", ListParameters),
                ("get_parameters", GetParameters),
                ("set_parameters", SetParameters),
            )
        }
        for c in clients[name].values():
            assert spin_until(ex, c.service_is_ready, STARTUP_S), proc.output()
    return procs, ex, clients


def _describe(ex, clients, names):
    res = call_service(ex, clients["describe_parameters"], DescribeParameters.Request(names=list(names)), 30.0)
    assert res is not None and len(res.descriptors) == len(names)
    return {d.name: d for d in res.descriptors}


def test_parameter_descriptors_over_dds(three_nodes):
    """One graph start (three nodes) for both checks: it is the expensive part."""
    procs, ex, clients = three_nodes
    _check_ranges_and_read_only(ex, clients)
    _check_refusals(ex, clients)
    for p in procs.values():
        assert p.alive(), p.output()


def _check_ranges_and_read_only(ex, clients):
    for node_name, expected in EXPECTED.items():
        c = clients[node_name]
        listed = call_service(ex, c["list_parameters"], ListParameters.Request(), 30.0)
        assert listed is not None
        names = list(listed.result.names)
        assert set(expected) <= set(names), (node_name, names)
        desc = _describe(ex, c, names)
        for name, (kind, lo, hi, read_only) in expected.items():
            d = desc[name]
            assert d.read_only is read_only, (node_name, name)
            if kind == "float":
                assert len(d.floating_point_range) == 1 and not d.integer_range, (node_name, name)
                r = d.floating_point_range[0]
                assert (r.from_value, r.to_value, r.step) == pytest.approx((lo, hi, 0.0)), (node_name, name)
            else:
                assert len(d.integer_range) == 1 and not d.floating_point_range, (node_name, name)
                r = d.integer_range[0]
                assert (r.from_value, r.to_value, r.step) == (lo, hi, 1), (node_name, name)
        # every numeric scalar parameter of ours has a range and a description
        ours = [n for n in names if n != "use_sim_time" and not n.startswith(("qos_overrides", "start_type"))]
        for n in ours:
            d = desc[n]
            assert d.description, (node_name, n)
            if d.type == ParameterType.PARAMETER_DOUBLE:
                assert d.floating_point_range, f"{node_name}: {n} (double) has no range"
            if d.type == ParameterType.PARAMETER_INTEGER:
                assert d.integer_range, f"{node_name}: {n} (integer) has no range"


def _check_refusals(ex, clients):
    sim = clients["sim"]

    def get(name):
        res = call_service(ex, sim["get_parameters"], GetParameters.Request(names=[name]), 30.0)
        return res.values[0].double_value

    def set_(name, value):
        res = call_service(ex, sim["set_parameters"], SetParameters.Request(parameters=[_double(name, value)]), 30.0)
        return res.results[0]

    before = get("command_timeout_s")
    for bad in (100.0, -1.0, 0.0):  # beyond the range's ends, and its open lower end
        r = set_("command_timeout_s", bad)
        assert not r.successful and "command_timeout_s" in r.reason, (bad, r.reason)
        assert get("command_timeout_s") == before
    assert set_("command_timeout_s", 0.5).successful and get("command_timeout_s") == 0.5
    r = set_("rate_hz", 50.0)
    assert not r.successful and "read-only" in r.reason
    assert get("rate_hz") == 100.0
    # the controller's and the vision service's parameters are all read-only at run time
    for node_name, name in (("controller", "watchdog_timeout_s"), ("vision", "max_images")):
        value = (
            ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.1)
            if node_name == "controller"
            else ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=10)
        )
        res = call_service(
            ex,
            clients[node_name]["set_parameters"],
            SetParameters.Request(parameters=[Parameter(name=name, value=value)]),
            30.0,
        )
        assert not res.results[0].successful and "read-only" in res.results[0].reason
