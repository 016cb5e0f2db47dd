"""Fixtures shared by every test: free loopback ports, temporary graph files."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port_number() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_port_number()


@pytest.fixture
def graph_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text to a temporary ``graph.yaml`` and return its path."""

    def write(text: str, name: str = "graph.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


# -- Ray (flowgraph.island.ray) -----------------------------------------------------------------------------------
# Ray listens on every interface it finds; its tests run it inside a network namespace whose only interface is
# loopback (made here: the tests run as root). The cluster is shared by the whole session: it takes 5–20 s to start.

@pytest.fixture(scope="session")
def ray_netns() -> Iterator[str]:
    """A network namespace for Ray: loopback and a veth pair inside it (for Chromium's ICE), nothing reachable from
    outside; skipped (saying why) where none can be made."""
    from flowgraph import netns

    name = f"fgtest{os.getpid()}"
    try:
        netns.create(name, local_address="10.213.0.1/24")
    except netns.NetnsUnavailable as exc:
        pytest.skip(f"Ray tests need a network namespace (Ray listens on every interface otherwise): {exc}")
    yield name
    netns.delete(name)


@pytest.fixture(scope="session")
def ray_cluster(ray_netns: str) -> Iterator[Any]:
    """A two-node Ray cluster (``ray.cluster_utils.Cluster``: two raylets, 3 CPUs each) on loopback inside
    ``ray_netns``, with this process's driver connected. Use it together with ``in_ray_netns``."""
    import ray
    from ray._common.utils import get_default_ray_temp_dir
    from ray.cluster_utils import Cluster

    from flowgraph import netns

    temp = tempfile.mkdtemp(prefix="fgray")  # short: Ray's Unix socket paths must fit 107 bytes
    # Cluster() writes the head's address to Ray's default temp folder whatever temp_dir says, and only a Ray
    # started without temp_dir creates that folder: on a fresh machine it is missing
    os.makedirs(get_default_ray_temp_dir(), exist_ok=True)
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")  # a loaded 2-core host registers slowly
    args = {"num_cpus": 3, "node_ip_address": "127.0.0.1", "object_store_memory": 256 << 20}
    with netns.inside(ray_netns):
        cluster = Cluster(initialize_head=True, head_node_args={**args, "include_dashboard": False,
                                                                 "temp_dir": temp})
        try:
            cluster.add_node(**args)
            cluster.flowgraph_node_args = args  # a test that removes a Ray node adds one like it
            cluster.wait_for_nodes(timeout=180)
            ray.init(address=cluster.address, namespace="flowgraph-tests", configure_logging=False,
                     log_to_driver=False)
        except BaseException:
            cluster.shutdown()
            raise
    try:
        yield cluster
    finally:
        with netns.inside(ray_netns):
            ray.shutdown()
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def in_ray_netns(ray_netns: str) -> Iterator[str]:
    """The test's thread inside ``ray_netns`` for its duration: servers it starts, clients it opens and
    processes it spawns (Chromium, ``flowgraph run``) live next to the Ray cluster."""
    from flowgraph import netns

    with netns.inside(ray_netns):
        yield ray_netns
