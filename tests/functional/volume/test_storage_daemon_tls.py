"""[volume] nbd_tls with the real qemu-storage-daemon: the command line it
gets with TLS on and off, what the daemon holds over QMP, who gets through
the NBD handshake (a client with a certificate from the CA; not one
without, nor one with a certificate from another CA), the connection a
compute host gets, and the start-up config errors naming the option."""

from __future__ import annotations

import os
import subprocess

import pytest

from flotilla.conf.loader import ConfigError
from tests.fixtures.nbd_tls import make_pki, qemu_client_object
from tests.fixtures.ports import free_port
from volume.nbd import TLS_OBJECT_ID, TLS_SERVER_FILES, StorageDaemon, daemon_args

VOLUME = "3f1c1a52-7c55-4e0e-9d53-2a1b7a0c9e11"


def test_the_command_line_with_tls_off_and_on():
    plain = daemon_args("qsd", "/r/qmp.sock", "/r/qsd.pid", "10.0.0.5", 10809)
    assert plain == ["qsd", "--chardev", "socket,id=qmp0,path=/r/qmp.sock,server=on,wait=off",
                     "--monitor", "chardev=qmp0",
                     "--nbd-server", "addr.type=inet,addr.host=10.0.0.5,addr.port=10809",
                     "--pidfile", "/r/qsd.pid"]
    tls = daemon_args("qsd", "/r/qmp.sock", "/r/qsd.pid", "10.0.0.5", 10809, "/pki,x")
    assert tls[:5] == plain[:5]
    assert tls[5:] == [
        "--object", "tls-creds-x509,id=%s,endpoint=server,verify-peer=on,dir=/pki,,x"
        % TLS_OBJECT_ID,
        "--nbd-server", "addr.type=inet,addr.host=10.0.0.5,addr.port=10809,tls-creds=%s"
        % TLS_OBJECT_ID,
        "--pidfile", "/r/qsd.pid"]


def test_tls_off_needs_no_files(conf):
    conf.set_override("nbd_tls_x509_dir", "/nonexistent", group="volume")
    daemon = StorageDaemon(conf)
    assert daemon.tls_dir is None
    assert daemon.connection(VOLUME)["tls"] is False


@pytest.mark.parametrize("missing", TLS_SERVER_FILES)
def test_tls_on_with_a_missing_file_is_a_config_error(conf, tmp_path, missing):
    pki = make_pki(tmp_path)
    os.unlink(os.path.join(pki.server_dir, missing))
    conf.set_override("nbd_tls", True, group="volume")
    conf.set_override("nbd_tls_x509_dir", pki.server_dir, group="volume")
    with pytest.raises(ConfigError, match=r"\[volume\] nbd_tls_x509_dir .*%s" % missing):
        StorageDaemon(conf)


def test_tls_on_with_an_unreadable_file_is_a_config_error(conf, tmp_path):
    pki = make_pki(tmp_path)
    key = os.path.join(pki.server_dir, "server-key.pem")
    os.unlink(key)
    os.mkdir(key)      # root reads any file; a directory cannot be opened as one
    conf.set_override("nbd_tls", True, group="volume")
    conf.set_override("nbd_tls_x509_dir", pki.server_dir, group="volume")
    with pytest.raises(ConfigError, match="nbd_tls_x509_dir .* server-key.pem"):
        StorageDaemon(conf)


@pytest.fixture
def tls_daemon(conf, tmp_path):
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    conf.set_override("run_path", str(tmp_path / "run"), group="volume")
    conf.set_override("nbd_port", port, group="volume")
    conf.set_override("nbd_tls", True, group="volume")
    conf.set_override("nbd_tls_x509_dir", pki.server_dir, group="volume")
    daemon = StorageDaemon(conf)
    path = tmp_path / "volume.raw"
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    yield daemon, pki, port, str(path)
    daemon.unexport(VOLUME)
    assert daemon.stop_if_idle()


def _qemu_io(url: str, *objects: str) -> subprocess.CompletedProcess:
    args = ["qemu-io"]
    for obj in objects:
        args += ["--object", obj]
    if objects:
        args += ["--image-opts", "driver=raw,file.driver=nbd,file.host=%s,file.port=%s,"
                 "file.export=%s,file.tls-creds=tls0" % url]
    else:
        args += ["-f", "raw", "nbd://%s:%s/%s" % url]
    return subprocess.run(args + ["-c", "read 0 4k"], capture_output=True, text=True,
                          timeout=60)


def test_only_clients_with_a_certificate_from_the_ca_get_through(tls_daemon, tmp_path):
    daemon, pki, port, path = tls_daemon
    connection = daemon.export(VOLUME, path)
    assert connection["tls"] is True and connection["port"] == port
    # The daemon holds the server credentials its NBD server uses.
    qmp = daemon._session()
    try:
        base = "/objects/%s" % TLS_OBJECT_ID
        assert qmp.execute("qom-get", path=base, property="endpoint") == "server"
        assert qmp.execute("qom-get", path=base, property="verify-peer") is True
        assert qmp.execute("qom-get", path=base, property="dir") == pki.server_dir
    finally:
        qmp.close()
    assert daemon.serves_tls() is True
    url = ("127.0.0.1", port, VOLUME)

    good = _qemu_io(url, qemu_client_object(pki.client_dir))
    assert good.returncode == 0 and "read 4096/4096" in good.stdout, good.stderr
    plain = _qemu_io(url)
    assert plain.returncode != 0
    assert "TLS" in plain.stderr or "tls" in plain.stderr, plain.stderr
    # A client trusting the server, with a certificate another CA signed.
    other = make_pki(tmp_path / "other")
    for name in ("client-cert.pem", "client-key.pem"):
        os.replace(os.path.join(other.client_dir, name), os.path.join(pki.client_dir, name))
    foreign = _qemu_io(url, qemu_client_object(pki.client_dir))
    assert foreign.returncode != 0, foreign.stdout


def test_the_volume_service_does_not_start_without_the_files(conf, tmp_path):
    """flotilla-volume builds its manager at start (flotilla.service turns
    the ConfigError into exit status 2 and its message)."""
    from volume.manager import VolumeManager
    conf.set_override("nbd_tls", True, group="volume")
    conf.set_override("nbd_tls_x509_dir", str(tmp_path / "none"), group="volume")
    with pytest.raises(ConfigError, match=r"\[volume\] nbd_tls is true .* ca-cert.pem"):
        VolumeManager(conf, host="vol1", backend=object())


def test_a_plain_daemon_holds_no_tls_object_and_a_tls_service_says_so(
        conf, tmp_path, caplog):
    port = free_port()
    conf.set_override("run_path", str(tmp_path / "run"), group="volume")
    conf.set_override("nbd_port", port, group="volume")
    daemon = StorageDaemon(conf)
    assert daemon.ensure_running() is True
    try:
        assert daemon.serves_tls() is False
        # The service restarted with TLS on finds the plain daemon still
        # running (it outlives the service): kept, and logged as an error.
        pki = make_pki(tmp_path / "pki")
        conf.set_override("nbd_tls", True, group="volume")
        conf.set_override("nbd_tls_x509_dir", pki.server_dir, group="volume")
        with caplog.at_level("ERROR", logger="volume.nbd"):
            assert StorageDaemon(conf).ensure_running() is False
        assert "serves NBD in the clear but [volume] nbd_tls is True" in caplog.text
    finally:
        assert daemon.stop_if_idle()
