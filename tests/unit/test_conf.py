"""Configuration: every group registered, bad values fail early and clearly."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from oslo_config import cfg

from flotilla import conf as flotilla_conf
from flotilla.conf import loader

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load(tmp_path, text):
    path = tmp_path / "flotilla.conf"
    path.write_text(text)
    opts = cfg.ConfigOpts()
    flotilla_conf.register_all(opts)
    return loader.load(["--config-file", str(path)], "flotilla-test", opts)


def test_defaults_load(tmp_path):
    opts = _load(tmp_path, "[DEFAULT]\n")
    assert opts.transport_url == "memory://"
    assert opts.concurrency_backend == "threading"
    assert opts.rpc.control_exchange == "flotilla"


def test_every_option_has_help():
    from flotilla.conf import opts
    for group, options in opts.list_opts():
        for opt in options:
            assert opt.help and len(opt.help) > 10, (group, opt.name)


@pytest.mark.parametrize("text, expected", [
    ("[DEFAULT]\nconcurrency_backend = greenlets\n",
     "[DEFAULT] concurrency_backend: Valid values are [threading, eventlet], but found 'greenlets'"),
    ("[DEFAULT]\nreport_interval = often\n", "[DEFAULT] report_interval"),
    ("[DEFAULT]\nreport_interval = 0\n", "[DEFAULT] report_interval"),
    ("[DEFAULT]\ntransport_url = kafka://h:1/\n",
     "[DEFAULT] transport_url: scheme 'kafka' is not one of rabbit, amqp, memory"),
    ("[DEFAULT]\ntransport_url = rabbit://u:p@h:notaport/\n",
     "[DEFAULT] transport_url: port 'notaport' is not a number"),
    ("[database]\nconnection = mysql://u:p@h/db\n", "[database] connection: not a URL"),
    ("[rpc]\ncall_timeout = -1\n", "[rpc] call_timeout"),
])
def test_bad_value_names_the_option(tmp_path, text, expected):
    with pytest.raises(loader.ConfigError) as info:
        _load(tmp_path, text)
    assert expected in str(info.value)
    assert str(tmp_path) in str(info.value)  # and the file it came from


def test_secret_value_is_never_echoed(tmp_path):
    with pytest.raises(loader.ConfigError) as info:
        _load(tmp_path, "[DEFAULT]\ntransport_url = kafka://user:hunter2secret@h/\n")
    assert "hunter2secret" not in str(info.value)
    with pytest.raises(loader.ConfigError) as info:
        _load(tmp_path, "[database]\nconnection = oracle://u:hunter2secret@h/x\n")
    assert "hunter2secret" not in str(info.value)


def test_missing_config_file(tmp_path):
    opts = cfg.ConfigOpts()
    flotilla_conf.register_all(opts)
    with pytest.raises(loader.ConfigError, match="config file not found: .*nope.conf"):
        loader.load(["--config-file", str(tmp_path / "nope.conf")], "t", opts)


def test_unparsable_config_file(tmp_path):
    path = tmp_path / "broken.conf"
    path.write_text("this is not ini\n[DEFAULT\n")
    opts = cfg.ConfigOpts()
    flotilla_conf.register_all(opts)
    with pytest.raises(loader.ConfigError, match="cannot parse config file"):
        loader.load(["--config-file", str(path)], "t", opts)


def test_sample_config_is_current(tmp_path):
    """etc/flotilla/flotilla.conf.sample must be what the generator writes."""
    out = tmp_path / "sample.conf"
    subprocess.run(
        [sys.executable, "-m", "oslo_config.generator", "--namespace", "flotilla",
         "--wrap-width", "79", "--output-file", str(out)],
        check=True, cwd=REPO)
    committed = (REPO / "etc/flotilla/flotilla.conf.sample").read_text()
    assert out.read_text() == committed, (
        "etc/flotilla/flotilla.conf.sample is stale: run `make genconfig` and commit it")
