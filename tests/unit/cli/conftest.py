from __future__ import annotations

import os

import pytest

from flotilla.cli import main as cli_main
from tests.fixtures.fake_sdk import FakeConnection


@pytest.fixture(autouse=True)
def no_os_env(monkeypatch, tmp_path):
    """No credentials or clouds.yaml of the machine leak into the tests."""
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def fake():
    return FakeConnection()


@pytest.fixture
def run(fake, capsys):
    """Run the CLI on the fake connection: returns (exit code, out, err)."""
    def run(*argv: str):
        code = cli_main.main(["--poll-interval", "0", *argv], connector=lambda args: fake)
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run
