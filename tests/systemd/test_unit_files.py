"""The unit files of etc/systemd/, read on the host (no container needed):
one per daemon, valid for systemd, with the rules the issue set. Their
behaviour under a real systemd is tests/systemd/test_under_systemd.py."""

from __future__ import annotations

import configparser
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "etc/systemd").glob("*.service"))
DAEMONS = {"flotilla-api", "flotilla-scheduler", "flotilla-conductor", "flotilla-compute",
           "flotilla-volume"}
INSTALL = REPO / "tools/install/install.sh"


def _unit(path: pathlib.Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def test_one_unit_per_daemon():
    assert {p.stem for p in UNITS} == DAEMONS


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_rules(path):
    unit = _unit(path)
    service = unit["Service"]
    assert service["ExecStart"].endswith(
        "/%s --config-file /etc/flotilla/flotilla.conf" % path.stem)
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    # A configuration error (status 2) and systemd's set-up failures end the
    # unit failed after one try.
    assert {"2", "216", "217"} <= set(service["RestartPreventExitStatus"].split())
    assert int(unit["Unit"]["StartLimitBurst"]) > 1
    assert service["KillSignal"] == "SIGTERM"
    # Longer than the daemon's default graceful_shutdown_timeout (30 s).
    assert int(service["TimeoutStopSec"]) > 30
    assert service["User"] != "root"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    # A group the host may lack fails the start: groups come from /etc/group.
    assert "SupplementaryGroups" not in service
    assert service["UMask"] == ("0022" if path.stem == "flotilla-compute" else "0077")


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_documentation_is_installed_by_the_install_script(path):
    script = INSTALL.read_text()
    for url in _unit(path)["Unit"]["Documentation"].split():
        assert url.startswith("file:///usr/share/doc/flotilla/"), url
        name = url.rsplit("/", 1)[1]
        assert re.search(r'"\$DOCDIR/%s"' % re.escape(name), script), \
            "%s: install.sh does not install %s" % (path.name, url)
    assert "DOCDIR=/usr/share/doc/flotilla\n" in script


def _local_copies(tmp_path: pathlib.Path) -> list[str]:
    # verify checks that ExecStart exists: point it at this venv.
    bindir = pathlib.Path(sys.executable).parent
    for path in UNITS:
        text = path.read_text().replace("/opt/flotilla/bin", str(bindir))
        (tmp_path / path.name).write_text(text)
    return sorted(str(p) for p in tmp_path.iterdir())


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: tools/ensure-services.sh installs systemd"
    result = subprocess.run([tool, "verify", *_local_copies(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if str(tmp_path) in line or "Failed" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_offline_security_exposure(tmp_path):
    """systemd-analyze's offline rating: the container tier checks the live
    one; this catches a weakened unit in a second."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: tools/ensure-services.sh installs systemd"
    scores = {}
    for unit in _local_copies(tmp_path):
        out = subprocess.run([tool, "security", "--offline=true", "--no-pager", unit],
                             capture_output=True, text=True, timeout=60).stdout
        match = re.search(r"Overall exposure level for (\S+)\.service: (\d+\.\d+)", out)
        assert match, out[-2000:]
        scores[match.group(1)] = float(match.group(2))
    assert set(scores) == DAEMONS and max(scores.values()) <= 2.0, scores
