"""The unmodified ``openstack`` CLI (python-openstackclient) as a tenant
meets it: key pairs, boot with --key-name, server set, lock/unlock, quota
show; and the admin's quota changes through openstacksdk.

Everything runs in this process: the API on a real cheroot server on a
loopback port, conductor, scheduler and two fake-driver agents on
memory:// (the sdk_cloud fixture). The CLI is called through its own entry
point with password credentials in OS_* variables; the catalog has no
volume or network service, as a Flotilla cloud has none.
"""

from __future__ import annotations

import json
import os

import openstack
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from openstackclient import shell
from osc_lib import clientmanager as osc_clientmanager

from flotilla import crypto
from flotilla.db import api as db
from flotilla.db import identity as identity_db
from tests.functional.api.test_openstacksdk import sdk_cloud  # noqa: F401


def _forget_clients() -> None:
    """OSC keeps each service's client in a ClientCache on its ClientManager
    class, for the life of the process (one command, in a shell): a later
    test's cloud on another port would get an earlier one's client."""
    for klass in (osc_clientmanager.ClientManager,
                  *osc_clientmanager.ClientManager.__subclasses__()):
        for value in vars(klass).values():
            if isinstance(value, osc_clientmanager.ClientCache):
                value._handle = None


@pytest.fixture
def cli(sdk_cloud, monkeypatch, tmp_path, capsys):  # noqa: F811
    """Runs ``openstack ARGS`` as alice (member of demo): (exit code,
    stdout, stderr)."""
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    for key, value in {"AUTH_URL": sdk_cloud + "/identity/v3", "USERNAME": "alice",
                       "PASSWORD": "alice-password", "PROJECT_NAME": "demo",
                       "USER_DOMAIN_NAME": "Default", "PROJECT_DOMAIN_NAME": "Default",
                       "IDENTITY_API_VERSION": "3", "REGION_NAME": "RegionOne"}.items():
        monkeypatch.setenv("OS_" + key, value)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        _forget_clients()
        code = shell.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    def ok(*args: str):
        code, out, err = run(*args)
        assert code == 0, (args, out, err)
        return json.loads(out) if "json" in args else out

    run.ok = ok
    return run


def _public_key_file(tmp_path) -> tuple[str, str]:
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    path = tmp_path / "id_ed25519.pub"
    path.write_text(key + " alice@laptop\n")
    return str(path), key


def _fields(rows: list[dict]) -> dict:
    return {row["Field"]: row["Value"] for row in rows} if isinstance(rows, list) else rows


def test_a_tenant_with_the_openstack_cli(sdk_cloud, cli, tmp_path):  # noqa: F811
    path, public_key = _public_key_file(tmp_path)
    # Key pairs: imported and generated (the CLI makes the key itself).
    imported = cli.ok("keypair", "create", "--public-key", path, "laptop", "-f", "json")
    assert imported["fingerprint"] == crypto.ssh_fingerprint(public_key)
    private = cli.ok("keypair", "create", "generated")
    assert "PRIVATE KEY" in private
    listed = cli.ok("keypair", "list", "-f", "json")
    assert sorted(k["Name"] for k in listed) == ["generated", "laptop"]
    shown = cli.ok("keypair", "show", "laptop", "-f", "json")
    assert shown["fingerprint"] == imported["fingerprint"] and shown["type"] == "ssh"
    code, _, err = cli("keypair", "show", "nope")
    assert code == 1 and "nope" in err

    # Boot with a key, as the tenant would.
    conn = openstack.connect()
    conn.image.create_image(name="tiny", data=b"\0" * 4096, disk_format="raw",
                            container_format="bare")
    server = cli.ok("server", "create", "--image", "tiny", "--flavor", "tiny",
                    "--key-name", "laptop", "--nic", "none", "--wait", "vm1",
                    "-f", "json")
    assert server["key_name"] == "laptop" and server["status"] == "ACTIVE"
    assert db.instance_get(server["id"]).key_data.startswith(public_key)
    code, _, err = cli("server", "create", "--image", "tiny", "--flavor", "tiny",
                       "--key-name", "missing", "--nic", "none", "vm-x")
    assert code == 1 and "key_name" in err

    # Rename and describe (the owner; 403 before).
    cli.ok("server", "set", "--name", "db1", "--description", "primary db", "vm1")
    shown = cli.ok("server", "show", "db1", "-f", "json")
    assert (shown["name"], shown["description"]) == ("db1", "primary db")

    # Lock with a reason: the owner's stop is refused, then allowed.
    cli.ok("server", "lock", "--reason", "maintenance", "db1")
    shown = cli.ok("server", "show", "db1", "-f", "json")
    assert shown["locked"] is True and shown["locked_reason"] == "maintenance"
    locked = cli.ok("server", "list", "--locked", "-f", "json")
    assert [s["Name"] for s in locked] == ["db1"]
    assert cli.ok("server", "list", "--unlocked", "-f", "json") == []
    code, _, err = cli("server", "stop", "db1")
    assert code == 1 and "is locked" in err
    code, _, err = cli("server", "delete", "db1")
    assert code == 1
    cli.ok("server", "unlock", "db1")
    cli.ok("server", "stop", "db1")
    conn.compute.wait_for_server(conn.compute.get_server(server["id"]), status="SHUTOFF",
                                 wait=60)
    assert cli.ok("server", "show", "db1", "-f", "json")["status"] == "SHUTOFF"

    # Quotas of one's own project (no volume or network service to ask).
    quota = {r["Resource"]: r["Limit"] for r in cli.ok("quota", "show", "-f", "json")}
    assert quota["instances"] == 10 and quota["key-pairs"] == 100
    assert quota["cores"] == 20 and quota["ram"] == 51200
    defaults = {r["Resource"]: r["Limit"]
                for r in cli.ok("quota", "show", "--default", "-f", "json")}
    assert defaults["instances"] == 10
    usage = {r["Resource"]: r for r in cli.ok("quota", "show", "--usage", "-f", "json")}
    assert usage["instances"]["In Use"] == 1 and usage["ram"]["In Use"] == 64

    # An admin raises the project's limits through openstacksdk; the
    # tenant sees them.
    identity_db.user_create("root", "root-password", "demo", scrypt_n=1024)
    identity_db.role_add("root", "demo", "admin")
    admin = openstack.connect(
        auth_url=sdk_cloud + "/identity/v3", username="root", password="root-password",
        project_name="demo", user_domain_name="Default",
        project_domain_name="Default", region_name="RegionOne",
        identity_api_version="3")
    project_id = identity_db.project_get("demo").id
    admin.compute.update_quota_set(project_id, instances=3, key_pairs=2)
    quota = {r["Resource"]: r["Limit"] for r in cli.ok("quota", "show", "-f", "json")}
    assert (quota["instances"], quota["key-pairs"]) == (3, 2)
    code, _, err = cli("keypair", "create", "--public-key", path, "third")
    assert code == 1 and "too many key pairs" in err
    admin.compute.revert_quota_set(project_id)
    quota = {r["Resource"]: r["Limit"] for r in cli.ok("quota", "show", "-f", "json")}
    assert (quota["instances"], quota["key-pairs"]) == (10, 100)

    # Clean up as a tenant would.
    cli.ok("keypair", "delete", "laptop", "generated")
    assert cli.ok("keypair", "list", "-f", "json") == []
    cli.ok("server", "delete", "--wait", "db1")
    assert cli.ok("server", "list", "-f", "json") == []


def test_keypairs_and_locks_with_the_flotilla_cli(sdk_cloud, cli, tmp_path, capsys):  # noqa: F811
    """The same routes through ``flotilla`` (same OS_* credentials)."""
    from flotilla.cli import main as flotilla_cli

    def flotilla(*args: str):
        capsys.readouterr()
        code = flotilla_cli.main(["--poll-interval", "0.2", *args])
        out, err = capsys.readouterr()
        assert code == 0, (args, out, err)
        return json.loads(out) if out.strip().startswith(("{", "[")) else out

    path, public_key = _public_key_file(tmp_path)
    imported = flotilla("-f", "json", "keypair", "create", "--public-key", path, "laptop")
    assert imported["fingerprint"] == crypto.ssh_fingerprint(public_key)
    # Generated by the cloud: the private key is saved, never shown again.
    target = tmp_path / "id_generated"
    flotilla("keypair", "create", "--private-key", str(target), "generated")
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    private = serialization.load_pem_private_key(target.read_bytes(), None)
    shown = flotilla("-f", "json", "keypair", "show", "generated")
    assert shown["public_key"].split()[1] == private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).split()[1].decode()
    assert [k["Name"] for k in flotilla("-f", "json", "keypair", "list")] == [
        "laptop", "generated"]

    conn = openstack.connect()
    conn.image.create_image(name="tiny", data=b"\0" * 4096, disk_format="raw",
                            container_format="bare")
    server = flotilla("-f", "json", "server", "create", "vm", "--flavor", "tiny",
                      "--image", "tiny", "--key-name", "laptop", "--wait")
    assert server["key_name"] == "laptop" and server["locked"] is False
    flotilla("server", "lock", "vm", "--reason", "backup running")
    server = flotilla("-f", "json", "server", "show", "vm")
    assert server["locked"] is True and server["locked_reason"] == "backup running"
    code = flotilla_cli.main(["server", "stop", "vm"])
    assert code == 1 and "is locked" in capsys.readouterr().err
    flotilla("server", "unlock", "vm")
    assert flotilla("-f", "json", "server", "stop", "vm", "--wait")["status"] == "SHUTOFF"
    flotilla("server", "delete", "vm", "--wait")
    flotilla("keypair", "delete", "laptop", "generated")
    assert flotilla("-f", "json", "keypair", "list") == []
