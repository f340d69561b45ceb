"""NBD over TLS end to end on a rig host ([volume] nbd_tls, issue 11):
a qemu-storage-daemon of the test's own serves a blank volume with TLS
only (throwaway CA, tests/fixtures/nbd_tls.py); the rig host's libvirtd
(qemu.conf ``nbd_tls_x509_cert_dir`` holding the client's files) attaches
it to the running real guest as a ``tls='yes'`` network disk; the guest
writes its marker on it and the volume file holds that marker. A client
without a certificate (``qemu-img info`` on the nbd:// URL, no
tls-creds) is refused by the same daemon. No cloud is brought up."""

from __future__ import annotations

import subprocess
import types
import uuid as uuidlib

from compute.virt.block_device import VolumeConnection
from tests.fixtures.nbd_tls import copy_client_files, make_pki, qemu_client_object
from tests.fixtures.ports import free_port
from tests.fixtures.rig import virsh
from tests.fixtures.waiting import wait_until
from tests.unit.virt.contract import new_instance
from volume.nbd import StorageDaemon


def _qemu_img_info(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", "info", *extra, url], capture_output=True,
                          text=True, timeout=60)


def test_a_tls_export_reaches_the_guest_and_refuses_a_plain_client(
        driver, rig_host, guest_image, tmp_path):
    pki = make_pki(tmp_path / "pki")
    copy_client_files(pki, rig_host["nbd_tls_x509_cert_dir"])
    port = free_port()
    daemon = StorageDaemon(types.SimpleNamespace(volume=types.SimpleNamespace(
        run_path=str(tmp_path / "qsd"), nbd_host="127.0.0.1", nbd_port=port,
        storage_daemon="qemu-storage-daemon", nbd_tls=True,
        nbd_tls_x509_dir=pki.server_dir)))
    volume_id = str(uuidlib.uuid4())
    path = tmp_path / "volume.raw"
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    try:
        connection = VolumeConnection.from_dict(daemon.export(volume_id, str(path)))
        assert connection.tls is True
        url = "nbd://127.0.0.1:%d/%s" % (port, volume_id)

        # A client without a certificate is refused; one with the CA's is not.
        plain = _qemu_img_info(url)
        assert plain.returncode != 0, plain.stdout
        assert "TLS" in plain.stderr, plain.stderr
        good = _qemu_img_info(
            "driver=nbd,host=127.0.0.1,port=%d,export=%s,tls-creds=tls0" % (port, volume_id),
            "--object", qemu_client_object(pki.client_dir), "--image-opts")
        assert good.returncode == 0 and "16 MiB" in good.stdout, good.stderr

        image = {"id": "flotilla-guest-%s" % guest_image["sha256"][:12],
                 "source": guest_image["image"], "sha256": guest_image["sha256"]}
        inst = new_instance(memory_mb=guest_image["min_ram_mb"] + 16)
        driver.spawn(inst, image)
        wait_until(lambda: guest_image["partitions_marker"] in driver.get_console_output(inst),
                   90, "the guest's boot")
        assert driver.attach_volume(inst, connection) == "vdb"
        domain = virsh(rig_host["uri"], "dumpxml", inst.uuid).stdout
        assert "tls='yes'" in domain or 'tls="yes"' in domain, domain
        written = "%s vdb written %s" % (guest_image["disk_marker"], inst.uuid)
        wait_until(lambda: written in driver.get_console_output(inst), 60,
                   "the guest's marker on the TLS volume")
        # It went through the TLS export into the volume's file.
        with open(path, "rb") as f:
            head = f.read(512)
        assert ("%s %s" % (guest_image["disk_marker"], inst.uuid)).encode() in head
        driver.destroy(inst)
    finally:
        daemon.unexport(volume_id)
        assert daemon.stop_if_idle()
