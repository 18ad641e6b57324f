"""nodes.yml validation, slicing, the worker command and what --retry-failed picks."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import pytest

from opsrunner.runner import nodes
from opsrunner.store import ResultRecord, RunRecord, Store

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nodes.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_file_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k", encoding="utf-8")
    loaded = nodes.load_nodes(
        _write(
            tmp_path,
            "target_key: key\n"
            "nodes:\n"
            "  - name: n1\n"
            "    host: 10.0.0.5\n"
            "    identity_file: ids/n1\n"
            "  - {name: n2, host: exec2.example.com, port: 2222, capacity: 3}\n",
        )
    )
    assert [n.name for n in loaded.nodes] == ["n1", "n2"]
    assert loaded.target_key == str(tmp_path / "key")
    assert loaded.nodes[0].identity_file == str(tmp_path / "ids" / "n1")
    assert loaded.nodes[1].port == 2222 and loaded.nodes[1].capacity == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "nodes:\n  - name: n1\n    host: 10.0.0.5\n    colour: red\n",
            ":4 nodes[0].colour: Extra inputs are not permitted",
        ),
        (
            "nodes:\n  - name: n1\n    host: -oProxyCommand=sh\n",
            ":3 nodes[0].host: String should match pattern",
        ),
        (
            "nodes:\n  - {name: n1, host: a}\n  - {name: n1, host: b}\n",
            ":1 nodes: node name 'n1' appears twice",
        ),
        (
            "nodes:\n  - name: n1\n    host: a\n    port: 0\n",
            ":4 nodes[0].port: Input should be greater than or equal to 1",
        ),
        (
            "nodes:\n  - name: n1\n    host: a\n    ssh_options: [ProxyCommand]\n",
            ":4 nodes[0].ssh_options[0]: String should match pattern",
        ),
        ("nodes: []\n", ":1 nodes: Tuple should have at least 1 item"),
        ("target_key: nowhere\nnodes:\n  - {name: n1, host: a}\n", ":1 target_key: "),
        ("nodes:\n  - name: n1\n  host: [\n", ":3: malformed YAML"),
    ],
)
def test_bad_file_names_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(nodes.NodesError) as caught:
        nodes.load_nodes(path)
    assert f"{path}{expected}" in str(caught.value), str(caught.value)


def test_slices_are_contiguous_sized_by_capacity_and_stable() -> None:
    a = nodes.Node(name="a", host="h1")
    b = nodes.Node(name="b", host="h2")
    c = nodes.Node(name="c", host="h3", capacity=2)
    hosts = ["host4", "host2", "host1", "host3"]
    assert [(n.name, h) for n, h in nodes.slice_hosts(hosts, [a, b])] == [
        ("a", ["host1", "host2"]),
        ("b", ["host3", "host4"]),
    ]
    assert [(n.name, len(h)) for n, h in nodes.slice_hosts(hosts, [a, c])] == [("a", 2), ("c", 2)]
    assert [
        (n.name, len(h)) for n, h in nodes.slice_hosts([f"h{i}" for i in range(9)], [a, c])
    ] == [
        ("a", 3),
        ("c", 6),
    ]
    # More nodes than hosts: every host once, no empty slice.
    sliced = nodes.slice_hosts(["x"], [a, b, c])
    assert [(n.name, h) for n, h in sliced] == [("a", ["x"])]
    many = [f"h{i:03}" for i in range(101)]
    parts = nodes.slice_hosts(many, [a, b, c])
    assert sorted(h for _, chunk in parts for h in chunk) == many


def test_worker_command_and_ssh_argv_are_quoted() -> None:
    node = nodes.Node(
        name="n1", host="10.0.0.5", port=2222, identity_file="/k/id", ssh_options=("A=b c",)
    )
    command = nodes.worker_command(node, "/var/lib/opsrunner-worker/run.n1")
    assert shlex.split(command) == [
        "PATH=/opt/opsrunner-node/bin:$PATH",
        "/opt/opsrunner-node/bin/ansible-runner",
        "worker",
        "--private-data-dir",
        "/var/lib/opsrunner-worker/run.n1",
        "--delete",
    ]
    argv = nodes.ssh_argv(node, 7)
    assert argv[-1] == "10.0.0.5" and argv[0] == "ssh"
    assert "ConnectTimeout=7" in argv and "BatchMode=yes" in argv
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-i") + 1] == "/k/id"
    assert "A=b c" in argv


def _run(store: Store, ident: str, stats: dict[str, object], results: list[ResultRecord]) -> None:
    record = store.begin_run(RunRecord(ident=ident, mode="audit", status="running", started_at=NOW))
    assert record.id is not None
    store.add_results(record.id, results)
    store.finish_run(record.id, "interrupted", ended_at=NOW, stats=stats)


def test_retry_picks_the_slices_left_unknown(tmp_path: Path) -> None:
    with Store.open(None, tmp_path) as store:
        _run(
            store,
            "sliced",
            {
                nodes.SLICES_KEY: [
                    {"node": "n1", "hosts": ["host1", "host2"], "status": "successful"},
                    {"node": "n2", "hosts": ["host3", "host4"], "status": "interrupted"},
                ]
            },
            [ResultRecord(host="host1", control_id="FW-001", status="unknown", checked_at=NOW)],
        )
        run, hosts = nodes.retry_hosts(store, "sliced", "audit")
        assert run.ident == "sliced" and hosts == ["host3", "host4"]
        # A run that was not sliced: the hosts with an unknown result.
        _run(
            store,
            "local",
            {},
            [
                ResultRecord(host="host2", control_id="FW-001", status="unknown", checked_at=NOW),
                ResultRecord(host="host1", control_id="FW-001", status="pass", checked_at=NOW),
            ],
        )
        assert nodes.retry_hosts(store, "local", "audit")[1] == ["host2"]
        with pytest.raises(nodes.NodesError, match="is an audit run, not enforce"):
            nodes.retry_hosts(store, "local", "enforce")
        _run(
            store,
            "done",
            {nodes.SLICES_KEY: [{"node": "n1", "hosts": ["h"], "status": "successful"}]},
            [],
        )
        with pytest.raises(nodes.NodesError, match="nothing unknown to rerun"):
            nodes.retry_hosts(store, "done", "audit")
