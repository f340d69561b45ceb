"""One-host rig clouds for the benchmarks that need real guests."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable
from typing import Any

from tests.fixtures.rig import free_port_block
from tools.demo.bringup import Bringup


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_one_host_cloud(prefix: str, work: Callable[[Bringup], Any]) -> Any:
    """``work(cloud)`` on a one-host cloud brought up in a temporary
    directory (named ``prefix``), which is torn down and removed after."""
    root = tempfile.mkdtemp(prefix=prefix)
    cloud = Bringup(root, hosts=1, api_port=free_port(),
                    rig_base_port=free_port_block(4, start=19100, end=20000), say=say)
    cloud.up()
    try:
        return work(cloud)
    finally:
        cloud.down(keep_logs=False)
        shutil.rmtree(root, ignore_errors=True)
