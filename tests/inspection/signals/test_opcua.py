"""PLC output over OPC UA against a real asyncua server; the test plays the PLC through the server's nodes
(``drills.plc.OpcUaServer`` is its own PLC memory)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from drills.peers import free_port, wait_until
from drills.plc import OpcUaServer, Taken, take_result
from inspection.errors import ConfigError
from inspection.settings import REPO_ROOT
from inspection.signals.handshake import PlcError, PlcOutput, ResultCodes
from inspection.types import Verdict
from tests.inspection.signals.records import unit_verdict

pytest.importorskip("asyncua", reason="asyncua is not installed: pip install -e '.[opcua]' (or '.[dev]') to run the "
                    "OPC UA tests")

from inspection.signals.opcua import OpcUaBackend


@pytest.fixture(scope="module")
def server() -> Iterator[OpcUaServer]:
    with OpcUaServer() as s:
        yield s


@pytest.fixture
def plc(server: OpcUaServer) -> OpcUaServer:
    for name in ("ack", "sequence", "fault", "result_valid"):
        server.write(name, 0)
    return server


def output(server: OpcUaServer, **options: Any) -> PlcOutput:
    backend = OpcUaBackend(server.url, node_prefix=server.node_prefix)
    return PlcOutput(backend, heartbeat_s=0.1, **options)


def test_results_are_written_to_the_nodes_with_the_ack_handshake(server: OpcUaServer, plc: OpcUaServer) -> None:
    out = output(server, codes=ResultCodes(ok=1, ng=2, review=3))
    try:
        assert wait_until(lambda: plc.read("ready") == 1)
        out.submit_unit_verdict(unit_verdict("DOOR/17", Verdict.FAIL))
        out.submit_unit_verdict(unit_verdict("DOOR/18"))
        out.submit_unit_verdict(unit_verdict("DOOR/19", Verdict.REVIEW, missing=("back",)))
        taken = [take_result(plc) for _ in range(3)]
        beat = plc.read("heartbeat")
        assert wait_until(lambda: plc.read("heartbeat") != beat)
    finally:
        out.close()
    assert taken == [Taken(2, 1, "DOOR/17"), Taken(1, 2, "DOOR/18"), Taken(3, 3, "DOOR/19")]
    assert plc.read("ready") == 0 and plc.read("result_valid") == 0


def test_an_unacknowledged_result_sets_fault_on_the_node(server: OpcUaServer, plc: OpcUaServer) -> None:
    out = output(server, ack_timeout_s=0.3)
    try:
        out.submit_unit_verdict(unit_verdict("lost", Verdict.FAIL))
        assert wait_until(lambda: plc.read("fault") == 1)
        assert plc.read("result_valid") == 0 and out.stats().ack_timeouts == 1
    finally:
        out.close()


def test_a_missing_required_node_is_a_clear_error(server: OpcUaServer) -> None:
    backend = OpcUaBackend(server.url, node_prefix=server.node_prefix, nodes={"ack": "ns=2;s=nowhere"})
    with pytest.raises(PlcError, match="nowhere"):
        backend.connect()
    backend.close()


def test_unknown_signal_names_and_urls_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown signals"):
        OpcUaBackend(f"opc.tcp://127.0.0.1:{free_port()}", nodes={"colour": "ns=2;s=x"})
    with pytest.raises(ConfigError, match=r"opc\.tcp://"):
        OpcUaBackend("http://plc:4840")


def test_configured_without_asyncua_says_how_to_install() -> None:
    """In a fresh interpreter where asyncua cannot be imported, as on a base install."""
    script = ("import sys; sys.modules['asyncua'] = None; sys.modules['asyncua.sync'] = None\n"
              "from inspection.errors import ConfigError\n"
              "from inspection.settings import load_settings\n"
              "from inspection.signals import build_line_signals\n"
              "try:\n"
              "    build_line_signals(load_settings(opcua_url='opc.tcp://127.0.0.1:4840'))\n"
              "except ConfigError as e:\n"
              "    print(e)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "asyncua is not installed: pip install 'qcline[opcua]'" in out.stdout, out.stderr
