"""Where the container cannot run, the tier fails naming what is missing
(tests/systemd/nspawn.py raises Unavailable; the fixture turns it into a
failure, never a skip)."""

from __future__ import annotations

import pytest

from tests.systemd import nspawn


def test_without_root_it_names_root(monkeypatch):
    monkeypatch.setattr(nspawn.os, "geteuid", lambda: 1000)
    with pytest.raises(nspawn.Unavailable, match="need root"):
        nspawn.ensure_host_tools()


def test_without_the_tools_or_apt_it_names_the_packages(monkeypatch):
    monkeypatch.setattr(nspawn.os, "geteuid", lambda: 0)
    monkeypatch.setattr(nspawn.shutil, "which", lambda name: None)
    with pytest.raises(nspawn.Unavailable) as failure:
        nspawn.ensure_host_tools()
    assert "mmdebstrap, systemd-container, util-linux" in str(failure.value)
    assert "no apt-get" in str(failure.value)


def test_a_container_with_another_python_is_refused(tmp_path):
    (tmp_path / "usr/lib/python3.9").mkdir(parents=True)
    with pytest.raises(nspawn.Unavailable, match="the container has python3.9"):
        nspawn._check_python(tmp_path)


def test_the_machines_own_apt_sources_are_used():
    sources = nspawn.apt_sources()
    assert sources and all(p.is_file() for p in sources)
    assert nspawn.suite()
