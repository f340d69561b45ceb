"""The systemd units of etc/systemd/: valid for systemd, one per daemon."""

from __future__ import annotations

import configparser
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "etc/systemd").glob("*.service"))
DAEMONS = {"flotilla-api", "flotilla-scheduler", "flotilla-conductor", "flotilla-compute"}


def _unit(path: pathlib.Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def test_one_unit_per_daemon():
    assert {p.stem for p in UNITS} == DAEMONS


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_rules(path):
    unit = _unit(path)["Service"]
    assert unit["ExecStart"].endswith(
        "/%s --config-file /etc/flotilla/flotilla.conf" % path.stem)
    assert unit["Restart"] == "on-failure"
    assert unit["KillSignal"] == "SIGTERM"
    # Longer than the daemon's default graceful_shutdown_timeout (30 s).
    assert int(unit["TimeoutStopSec"]) > 30
    assert unit["User"] != "root"
    assert unit["NoNewPrivileges"] == "yes"


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: tools/ensure-services.sh installs systemd"
    bindir = pathlib.Path(sys.executable).parent
    for path in UNITS:
        # verify checks that ExecStart exists: point it at this venv.
        text = path.read_text().replace("/opt/flotilla/bin", str(bindir))
        (tmp_path / path.name).write_text(text)
    result = subprocess.run([tool, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                            capture_output=True, text=True, timeout=120)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if str(tmp_path) in line or "Failed" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
