"""Key pairs as Nova makes and checks them (with the ``cryptography``
package; no key material is ever logged).

Rules:

* an ssh public key is valid when ``cryptography`` parses it (rsa, ecdsa,
  ed25519, dsa in OpenSSH one-line form); its fingerprint is Nova's: the
  MD5 of the decoded key blob as colon-separated hex;
* an x509 "public key" is a PEM certificate; its fingerprint is the SHA-1
  of the certificate, colon-separated hex;
* generated keys: an RSA 2048 key (private key PEM, public key OpenSSH), or
  for x509 a self-signed client certificate for the user with its private
  key as base64 PKCS#12 (no passphrase), as Nova's WinRM certificates.
"""

from __future__ import annotations

import base64
import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from flotilla import exception

SSH, X509 = "ssh", "x509"
KEY_TYPES = (SSH, X509)
_UPN = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")   # Microsoft user principal name
_COMMENT = "Generated-by-Flotilla"


def _colons(hex_digest: str) -> str:
    return ":".join(hex_digest[i:i + 2] for i in range(0, len(hex_digest), 2))


def ssh_fingerprint(public_key: str) -> str:
    """Nova's fingerprint of an OpenSSH public key; InvalidKeypair when it
    is not one."""
    text = public_key.strip()
    try:
        serialization.load_ssh_public_key(text.encode("utf-8"))
        blob = base64.b64decode(text.split()[1], validate=True)
    except Exception as exc:   # ValueError, UnsupportedAlgorithm, binascii.Error
        raise exception.InvalidKeypair(
            reason="failed to generate fingerprint (%s)" % _why(exc)) from None
    return _colons(hashlib.md5(blob, usedforsecurity=False).hexdigest())


def x509_fingerprint(pem: str) -> str:
    """The SHA-1 fingerprint of a PEM certificate; InvalidKeypair when it
    is not one."""
    try:
        cert = x509.load_pem_x509_certificate(pem.strip().encode("utf-8"))
    except (ValueError, TypeError, UnicodeError) as exc:
        raise exception.InvalidKeypair(
            reason="failed to generate X509 fingerprint (%s)" % _why(exc)) from None
    return _colons(cert.fingerprint(hashes.SHA1()).hex())


def fingerprint(public_key: str, key_type: str) -> str:
    if key_type == X509:
        return x509_fingerprint(public_key)
    return ssh_fingerprint(public_key)


def _why(exc: BaseException) -> str:
    # cryptography's messages name the problem, never the key itself.
    return (str(exc) or type(exc).__name__).splitlines()[0][:120]


def generate_ssh_keypair(bits: int = 2048) -> tuple[str, str, str]:
    """(private key PEM, OpenSSH public key, fingerprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    public_key = "%s %s" % (public.decode("ascii"), _COMMENT)
    return private, public_key, ssh_fingerprint(public_key)


def generate_x509_keypair(user_id: str, bits: int = 2048) -> tuple[str, str, str]:
    """(base64 PKCS#12 of key and certificate, certificate PEM, fingerprint):
    a self-signed client certificate for ``user_id``, valid ten years."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id[:64])])
    upn = ("%s@localhost" % user_id).encode("utf-8")
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.OtherName(
                _UPN, b"\x0c" + _der_length(len(upn)) + upn)]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    bundle = pkcs12.serialize_key_and_certificates(
        None, key, cert, None, serialization.NoEncryption())
    return base64.b64encode(bundle).decode("ascii"), pem, x509_fingerprint(pem)


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets
