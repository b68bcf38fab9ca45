from __future__ import annotations

import pytest

from eventrouter.dev.localkafka import ToolMissingError
from eventrouter.dev.localkafka import fetch as fetch_mod
from eventrouter.dev.localkafka.config import ClusterSpec, NodeSpec, new_cluster_id, server_properties


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def _spec(n: int) -> ClusterSpec:
    nodes = tuple(NodeSpec(i + 1, 9000 + i, 9100 + i, f"/tmp/n{i + 1}") for i in range(n))
    return ClusterSpec(cluster_id=new_cluster_id(), nodes=nodes)


def test_cluster_id_is_22_url_safe_chars() -> None:
    cid = new_cluster_id()
    assert len(cid) == 22 and all(c.isalnum() or c in "-_" for c in cid)


def test_single_node_is_a_combined_kraft_node_on_loopback() -> None:
    spec = _spec(1)
    props = _props(server_properties(spec, spec.nodes[0]))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9000,CONTROLLER://127.0.0.1:9100"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9100"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert spec.bootstrap == "127.0.0.1:9000"


def test_three_nodes_replicate_three_ways_with_min_isr_two() -> None:
    spec = _spec(3)
    for node in spec.nodes:
        props = _props(server_properties(spec, node))
        assert props["controller.quorum.voters"] == "1@127.0.0.1:9100,2@127.0.0.1:9101,3@127.0.0.1:9102"
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["node.id"] == str(node.node_id)
    assert spec.bootstrap == "127.0.0.1:9000,127.0.0.1:9001,127.0.0.1:9002"


def test_missing_java_names_what_to_install_and_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda _name: None)
    with pytest.raises(ToolMissingError, match=r"(?s)Java 17\+.*apt-get install openjdk-17.*docker compose"):
        fetch_mod.require_java()


def test_missing_maven_names_what_to_install_and_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda _name: None)
    with pytest.raises(ToolMissingError, match=r"(?s)Maven.*apt-get install maven.*docker compose"):
        fetch_mod.require_maven()
