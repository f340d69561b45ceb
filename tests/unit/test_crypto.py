"""Key pair fingerprints and generation (flotilla.crypto), cross-checked
with OpenSSH's ssh-keygen and the cryptography package."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from flotilla import crypto, exception


def ssh_keygen_md5(tmp_path, public_key: str) -> str:
    """ssh-keygen's MD5 fingerprint of ``public_key`` (without ``MD5:``)."""
    tool = shutil.which("ssh-keygen")
    assert tool, "ssh-keygen (package openssh-client) is needed to cross-check fingerprints"
    path = tmp_path / "key.pub"
    path.write_text(public_key)
    out = subprocess.run([tool, "-l", "-E", "md5", "-f", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1].removeprefix("MD5:")


def _openssh(private) -> str:
    return private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()


@pytest.mark.parametrize("private", [
    ed25519.Ed25519PrivateKey.generate(),
    ec.generate_private_key(ec.SECP384R1()),
    rsa.generate_private_key(public_exponent=65537, key_size=1024),
], ids=["ed25519", "ecdsa-p384", "rsa"])
def test_fingerprint_is_ssh_keygens_md5(tmp_path, private):
    key = _openssh(private) + " someone@somewhere\n"
    assert crypto.ssh_fingerprint(key) == ssh_keygen_md5(tmp_path, key)


def test_generated_ssh_key_pair_belongs_together(tmp_path):
    private_pem, public_key, fingerprint = crypto.generate_ssh_keypair()
    private = serialization.load_pem_private_key(private_pem.encode(), None)
    assert private.key_size == 2048
    assert public_key.split()[:2] == _openssh(private).split()
    assert public_key.endswith(" Generated-by-Flotilla")
    assert fingerprint == ssh_keygen_md5(tmp_path, public_key)


@pytest.mark.parametrize("text", ["", " ", "ssh-rsa", "ssh-rsa JUNK nova@ubuntu",
                                  "ssh-ed25519 AAAA", "not a key at all"])
def test_invalid_ssh_keys(text):
    with pytest.raises(exception.InvalidKeypair):
        crypto.ssh_fingerprint(text)


def test_x509_fingerprint_refuses_what_is_no_certificate():
    with pytest.raises(exception.InvalidKeypair):
        crypto.x509_fingerprint("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
