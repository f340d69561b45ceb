"""os-keypairs: create (generated or imported), list, show, delete, per user
and per microversion; key_name at boot."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import pkcs12

from flotilla.db import api as db
from flotilla.db import identity as identity_db
from flotilla.db import quotas as quotas_db
from tests.functional.api.fixtures import IMAGE_ID, C
from tests.unit.test_crypto import ssh_keygen_md5 as _ssh_keygen_md5

K = C + "/os-keypairs"


def _ed25519() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode() + " me@laptop\n"


def _create(cloud, body: dict, who: str = "member", version: str = "2.2"):
    return cloud.request("POST", K, who, version, json={"keypair": body})


def test_import_an_ssh_key_at_2_1(api_cloud, tmp_path):
    public_key = _ed25519()
    r = _create(api_cloud, {"name": "laptop", "public_key": public_key}, version="2.1")
    assert r.status_code == 200, r.text
    keypair = r.json["keypair"]
    assert set(keypair) == {"name", "public_key", "fingerprint", "user_id"}
    assert keypair["fingerprint"] == _ssh_keygen_md5(tmp_path, public_key)
    assert keypair["user_id"] == identity_db.user_get("member").id
    assert keypair["public_key"] == public_key


def test_import_an_ecdsa_key_as_tempest_does(api_cloud, tmp_path):
    key = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    r = _create(api_cloud, {"name": "ec", "public_key": key}, version="2.92")
    assert r.status_code == 201, r.text
    assert r.json["keypair"]["fingerprint"] == _ssh_keygen_md5(tmp_path, key)
    assert r.json["keypair"]["type"] == "ssh"


def test_generated_ssh_key_is_returned_once(api_cloud):
    r = _create(api_cloud, {"name": "gen"})
    assert r.status_code == 201, r.text
    keypair = r.json["keypair"]
    assert keypair["type"] == "ssh"
    private = serialization.load_pem_private_key(keypair["private_key"].encode(), None)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    assert keypair["public_key"].split()[:2] == public.split()
    blob = base64.b64decode(public.split()[1])
    md5 = hashlib.md5(blob).hexdigest()
    assert keypair["fingerprint"] == ":".join(md5[i:i + 2] for i in range(0, 32, 2))
    shown = api_cloud.request("GET", K + "/gen", version="2.2").json["keypair"]
    assert "private_key" not in shown and shown["public_key"] == keypair["public_key"]


def test_generated_and_imported_x509(api_cloud):
    r = _create(api_cloud, {"name": "cert", "type": "x509"})
    assert r.status_code == 201, r.text
    keypair = r.json["keypair"]
    key, cert, _ = pkcs12.load_key_and_certificates(
        base64.b64decode(keypair["private_key"]), None)
    assert cert.public_bytes(serialization.Encoding.PEM).decode() == keypair["public_key"]
    assert keypair["fingerprint"] == ":".join(
        "%02x" % b for b in cert.fingerprint(hashes.SHA1()))
    user_id = identity_db.user_get("member").id
    assert cert.subject.rfc4514_string() == "CN=" + user_id
    r = _create(api_cloud, {"name": "cert2", "type": "x509",
                            "public_key": keypair["public_key"]})
    assert r.status_code == 201 and "private_key" not in r.json["keypair"]
    assert r.json["keypair"]["fingerprint"] == keypair["fingerprint"]
    assert api_cloud.request("GET", K + "/cert2", version="2.2").json[
        "keypair"]["type"] == "x509"


def test_list_show_delete_per_version(api_cloud):
    for name in ("a", "b", "c"):
        assert _create(api_cloud, {"name": name, "public_key": _ed25519()}).status_code == 201
    listed = api_cloud.request("GET", K, version="2.1").json["keypairs"]
    assert [k["keypair"]["name"] for k in listed] == ["a", "b", "c"]
    assert set(listed[0]["keypair"]) == {"name", "public_key", "fingerprint"}
    assert api_cloud.request("GET", K, version="2.2").json["keypairs"][0][
        "keypair"]["type"] == "ssh"
    page = api_cloud.request("GET", K + "?limit=2", version="2.35").json
    assert [k["keypair"]["name"] for k in page["keypairs"]] == ["a", "b"]
    assert "marker=b" in page["keypairs_links"][0]["href"]
    rest = api_cloud.request("GET", K + "?limit=2&marker=b", version="2.35").json
    assert [k["keypair"]["name"] for k in rest["keypairs"]] == ["c"]
    assert "keypairs_links" not in rest
    # Before 2.35 limit is not a keypairs parameter.
    assert len(api_cloud.request("GET", K + "?limit=1", version="2.34").json[
        "keypairs"]) == 3
    r = api_cloud.request("GET", K + "?marker=nope", version="2.35")
    assert r.status_code == 400 and "nope" in r.json["badRequest"]["message"]

    shown = api_cloud.request("GET", K + "/a", version="2.1").json["keypair"]
    assert set(shown) == {"name", "public_key", "fingerprint", "user_id", "id",
                          "deleted", "created_at", "updated_at", "deleted_at"}
    assert shown["deleted"] is False and shown["deleted_at"] is None
    assert shown["created_at"][:4].isdigit() and "Z" not in shown["created_at"]

    assert api_cloud.request("DELETE", K + "/a", version="2.1").status_code == 202
    assert api_cloud.request("DELETE", K + "/b", version="2.2").status_code == 204
    r = api_cloud.request("DELETE", K + "/b", version="2.2")
    assert r.status_code == 404 and "b" in r.json["itemNotFound"]["message"]
    assert api_cloud.request("GET", K + "/b").status_code == 404
    # A deleted name is free again.
    assert _create(api_cloud, {"name": "a", "public_key": _ed25519()}).status_code == 201


def test_query_parameters_are_checked_from_2_75(api_cloud):
    assert api_cloud.request("GET", K + "?bogus=1", "member", "2.74").status_code == 200
    r = api_cloud.request("GET", K + "?bogus=1", "member", "2.75")
    assert r.status_code == 400 and "bogus" in r.json["badRequest"]["message"]
    assert api_cloud.request("GET", K + "?limit=1", "member", "2.75").status_code == 200
    assert api_cloud.request("GET", K + "/x?limit=1", "member", "2.75").status_code == 400


def test_users_see_only_their_own(api_cloud):
    assert _create(api_cloud, {"name": "mine", "public_key": _ed25519()}).status_code == 201
    for who in ("other", "reader", "admin"):
        assert api_cloud.request("GET", K, who).json["keypairs"] == []
        assert api_cloud.request("GET", K + "/mine", who).status_code == 404
        assert api_cloud.request("DELETE", K + "/mine", who).status_code == 404
    # The same name for another user is no conflict.
    assert _create(api_cloud, {"name": "mine", "public_key": _ed25519()},
                   who="other").status_code == 201


def test_admin_manages_another_users_keys_at_2_10(api_cloud):
    member = identity_db.user_get("member").id
    r = _create(api_cloud, {"name": "given", "public_key": _ed25519(), "user_id": member},
                who="admin", version="2.10")
    assert r.status_code == 201 and r.json["keypair"]["user_id"] == member
    names = [k["keypair"]["name"] for k in api_cloud.request(
        "GET", K + "?user_id=" + member, "admin", "2.10").json["keypairs"]]
    assert names == ["given"]
    assert api_cloud.request("GET", K + "/given", "member").status_code == 200
    assert api_cloud.request("GET", K + "/given?user_id=" + member, "admin",
                             "2.10").json["keypair"]["user_id"] == member
    # Below 2.10 user_id is no field of the body; a non-admin may not use it.
    r = _create(api_cloud, {"name": "x", "public_key": _ed25519(), "user_id": member},
                who="admin", version="2.9")
    assert r.status_code == 400 and "user_id" in r.json["badRequest"]["message"]
    r = _create(api_cloud, {"name": "x", "public_key": _ed25519(), "user_id": member},
                who="other", version="2.10")
    assert r.status_code == 403
    r = api_cloud.request("GET", K + "?user_id=" + member, "other", "2.10")
    assert r.status_code == 403
    assert api_cloud.request("DELETE", K + "/given?user_id=" + member, "admin",
                             "2.10").status_code == 204
    assert api_cloud.request("GET", K + "/given", "member").status_code == 404


BAD = [
    ({"name": ""}, "2.2", "keypair.name"),
    ({"name": "k" * 256}, "2.2", "keypair.name"),
    ({"name": r"key_/.\@:"}, "2.2", "keypair.name"),
    ({"name": " lead"}, "2.2", "keypair.name"),
    ({"name": "a@b"}, "2.91", "keypair.name"),
    ({"name": "k", "public_key": "ssh-rsa JUNK nova@ubuntu"}, "2.2", "keypair.public_key"),
    ({"name": "k", "public_key": " "}, "2.2", "keypair.public_key"),
    ({"name": "k", "public_key": "ssh-rsa " + "A" * 2048 + " x"}, "2.2",
     "keypair.public_key"),
    ({"name": "k", "public_key": "not a certificate", "type": "x509"}, "2.2",
     "keypair.public_key"),
    ({"name": "k", "type": "ssh"}, "2.1", "type"),
    ({"name": "k", "type": "gpg"}, "2.2", "keypair.type"),
    ({"name": "k"}, "2.92", "public_key"),
    ({"name": "k", "bogus": 1}, "2.2", "bogus"),
]


@pytest.mark.parametrize("body,version,field", BAD)
def test_create_validation_names_the_field(api_cloud, body, version, field):
    r = _create(api_cloud, body, version=version)
    assert r.status_code == 400, r.text
    assert field in r.json["badRequest"]["message"]
    assert api_cloud.request("GET", K).json["keypairs"] == []


def test_name_with_at_and_dot_from_2_92(api_cloud):
    r = _create(api_cloud, {"name": "me@host.example", "public_key": _ed25519()},
                version="2.92")
    assert r.status_code == 201, r.text
    assert "private_key" not in r.json["keypair"]


def test_duplicate_name_is_409(api_cloud):
    assert _create(api_cloud, {"name": "dup", "public_key": _ed25519()}).status_code == 201
    r = _create(api_cloud, {"name": "dup", "public_key": _ed25519()})
    assert r.status_code == 409
    assert r.json["conflictingRequest"]["message"] == "Key pair 'dup' already exists."


def test_key_pairs_quota_is_per_user(api_cloud):
    quotas_db.set_limit("p1", "key_pairs", 1)
    assert _create(api_cloud, {"name": "one", "public_key": _ed25519()}).status_code == 201
    r = _create(api_cloud, {"name": "two", "public_key": _ed25519()})
    assert r.status_code == 403
    assert r.json["overLimit"]["message"] == "Quota exceeded, too many key pairs."
    # Another user of p1 has its own count.
    assert _create(api_cloud, {"name": "one", "public_key": _ed25519()},
                   who="reader").status_code == 201
    limits = api_cloud.request("GET", C + "/limits").json["limits"]["absolute"]
    assert limits["maxTotalKeypairs"] == 1


def test_key_name_at_boot(api_cloud):
    public_key = _ed25519()
    assert _create(api_cloud, {"name": "boot", "public_key": public_key}).status_code == 201
    uuid = api_cloud.create_server(key_name="boot")
    inst = db.instance_get(uuid)
    assert (inst.key_name, inst.key_data) == ("boot", public_key)
    server = api_cloud.request("GET", C + "/servers/" + uuid).json["server"]
    assert server["key_name"] == "boot"
    # Deleting the key pair later does not change the server.
    api_cloud.request("DELETE", K + "/boot")
    assert api_cloud.request("GET", C + "/servers/" + uuid).json["server"][
        "key_name"] == "boot"


@pytest.mark.parametrize("who,key_name", [("member", "missing"), ("other", "theirs")])
def test_key_name_at_boot_must_be_the_callers(api_cloud, who, key_name):
    assert _create(api_cloud, {"name": "theirs", "public_key": _ed25519()}).status_code == 201
    r = api_cloud.request("POST", C + "/servers", who, json={"server": {
        "name": "vm", "flavorRef": "1", "imageRef": IMAGE_ID, "key_name": key_name}})
    assert r.status_code == 400
    assert r.json["badRequest"]["message"] == "Invalid key_name provided."
    assert db.instance_get_all() == []

