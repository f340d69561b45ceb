"""The Tempest tier: OpenStack's own API tests against Flotilla.

``make tempest`` runs this with the project's venv. It

1. starts ``flotilla-all`` (memory://, SQLite, libvirt's test:///default,
   two compute hosts) on a free loopback port, in a fresh state directory
   under the work directory; or, with ``--cloud FILE`` (the ``source`` file
   ``make demo KEEP=1`` prints), uses that running multi-host cloud;
2. creates what Tempest needs as the admin, through the public API: two
   flavors and two images;
3. writes ``tempest.conf``: endpoints, the admin account for dynamic
   credentials, and the feature flags of ``tools/tempest/features.py``;
4. runs the compute, image v2 and identity v3 API tests with stestr
   (concurrency 2) from the pinned Tempest in ``.tempest-venv``;
5. prints passed / failed / skipped per area, every failure, and every skip
   reason with its count; exits 1 on any failure.

Nothing here knows about individual Tempest tests: what passes, passes
against the API as any client sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import features  # noqa: E402

AREAS = (("compute", r"tempest\.api\.compute\."),
         ("image v2", r"tempest\.api\.image\.v2\."),
         ("identity v3", r"tempest\.api\.identity\.(admin\.)?v3\."))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log(message: str) -> None:
    print("tempest-tier: %s" % message, flush=True)


# --- the cloud -----------------------------------------------------------------

class AllInOne:
    """flotilla-all in its own state directory on a free port."""

    def __init__(self, workdir: pathlib.Path, bindir: pathlib.Path) -> None:
        self.workdir = workdir
        state = workdir / "state"
        if state.exists():
            shutil.rmtree(state)
        state.mkdir(parents=True)
        self.port = _free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        config = workdir / "flotilla.conf"
        config.write_text(
            "[DEFAULT]\nstate_path = %s\n"
            "[api]\nbind_port = %d\nworkers = 16\n"
            "[identity]\nscrypt_n = 1024\n" % (state, self.port))
        self.log_path = workdir / "flotilla-all.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(bindir / "flotilla-all"), "--config-file", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while "Stop with Ctrl-C" not in self.log_path.read_text():
            if self.proc.poll() is not None:
                raise SystemExit("flotilla-all exited at start:\n%s"
                                 % self.log_path.read_text()[-3000:])
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("flotilla-all did not start within 120 s")
            time.sleep(0.2)
        self.password = (state / "admin-password").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _read_cloud_file(path: pathlib.Path) -> dict[str, str]:
    """OS_* variables from a shell file of ``export OS_X=...`` lines."""
    env = {}
    for name, value in re.findall(r"(OS_[A-Z_]+)=(\"[^\"]*\"|'[^']*'|\S+)",
                                  path.read_text()):
        env[name] = value.strip("\"'")
    return env


def bootstrap(auth_url: str, username: str, password: str, project: str,
              workdir: pathlib.Path, real_guest: bool) -> dict[str, str]:
    """The flavors and images Tempest boots with (made once, reused). On a
    real cloud the image is the tiny Linux guest (tools/guest-image), which
    writes to its serial console as Tempest's console tests expect; on the
    test driver a blank disk does."""
    import openstack
    conn = openstack.connect(auth_url=auth_url, username=username, password=password,
                             project_name=project, user_domain_name="Default",
                             project_domain_name="Default", region_name="RegionOne")
    result = {}
    for key, name, ram in (("flavor_ref", "tempest.tiny", 128),
                           ("flavor_ref_alt", "tempest.small", 192)):
        flavor = conn.compute.find_flavor(name, ignore_missing=True)
        if flavor is None:
            flavor = conn.compute.create_flavor(name=name, ram=ram, vcpus=1, disk=1)
        result[key] = flavor.id
    disk = workdir / "tempest-image.qcow2"
    if real_guest:
        built = subprocess.run([sys.executable, str(ROOT / "tools" / "guest-image" / "build.py"),
                                "--json"], capture_output=True, text=True, check=True)
        disk = pathlib.Path(json.loads(built.stdout)["image"])
    elif not disk.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"],
                       check=True)
    prefix = "tempest-guest" if real_guest else "tempest-image"
    for key, name in (("image_ref", prefix), ("image_ref_alt", prefix + "-alt")):
        image = conn.image.find_image(name, ignore_missing=True)
        if image is None:
            image = conn.image.create_image(name=name, filename=str(disk),
                                            disk_format="qcow2", container_format="bare",
                                            visibility="public", wait=True)
        result[key] = image.id
    result["compute_hosts"] = str(len(list(conn.compute.services(binary="nova-compute"))))
    conn.close()
    return result


# --- tempest.conf ----------------------------------------------------------------

def write_conf(path: pathlib.Path, auth_url: str, admin: dict[str, str],
               made: dict[str, str], log_dir: pathlib.Path, test_driver: bool) -> None:
    sections: dict[str, dict[str, object]] = {
        "DEFAULT": {"log_dir": log_dir, "log_file": "tempest.log", "debug": True},
        "auth": {"use_dynamic_credentials": True,
                 "admin_username": admin["username"], "admin_password": admin["password"],
                 "admin_project_name": admin["project"], "admin_domain_name": "Default",
                 "create_isolated_networks": False, "tempest_roles": "member"},
        "identity": {"uri_v3": auth_url, "auth_version": "v3", "region": "RegionOne",
                     "v3_endpoint_type": "public", "admin_role": "admin",
                     "default_domain_id": "default"},
        "compute": {"image_ref": made["image_ref"], "image_ref_alt": made["image_ref_alt"],
                    "flavor_ref": made["flavor_ref"],
                    "flavor_ref_alt": made["flavor_ref_alt"],
                    "endpoint_type": "publicURL", "region": "RegionOne",
                    "build_timeout": 120, "build_interval": 1,
                    "min_compute_nodes": made["compute_hosts"],
                    "min_microversion": "2.1", "max_microversion": "latest"},
        "image": {"endpoint_type": "publicURL", "region": "RegionOne",
                  "build_timeout": 60, "build_interval": 1,
                  "container_formats": "bare,ami,ari,aki,ovf,ova",
                  "disk_formats": "qcow2,raw,ami,ari,aki,vhd,vmdk,vdi,iso,vhdx"},
        "validation": {"connect_method": "fixed"},
    }
    for section, options in features.option_lines(test_driver).items():
        sections.setdefault(section, {}).update(options)
    lines = []
    for section, options in sections.items():
        lines.append("[%s]" % section)
        lines.extend("%s = %s" % (k, v) for k, v in options.items())
        lines.append("")
    path.write_text("\n".join(lines))


def check_conf(tempest_python: pathlib.Path) -> None:
    """Every option of the feature table must exist in this Tempest (a
    renamed flag would otherwise be ignored and its tests run or skip for
    another reason)."""
    names = [[s, o] for s, o, _, _ in features.FEATURES + features.TEST_DRIVER_LIMITS]
    script = (
        "import json,sys\nfrom tempest import config\n"
        "known={(g if isinstance(g,str) else getattr(g,'name',None)):"
        "{o.name for o in opts} for g,opts in config._opts}\n"
        "bad=[n for n in json.loads(sys.argv[1]) if n[1] not in known.get(n[0],set())]\n"
        "print(json.dumps(bad))\n")
    out = subprocess.run([str(tempest_python), "-c", script, json.dumps(names)],
                         capture_output=True, text=True, check=True).stdout
    bad = json.loads(out)
    if bad:
        raise SystemExit("tools/tempest/features.py names options this Tempest does "
                         "not have: %s" % bad)


# --- the run ----------------------------------------------------------------------

def test_regex() -> str:
    areas = "|".join(pattern for _, pattern in AREAS)
    not_run = "|".join(re.escape(m) for m in list(features.NOT_RUN) + list(features.PENDING))
    return r"^(?!tempest\.api\.(%s)[.\[])(%s)" % (not_run, areas)


def run_tempest(venv: pathlib.Path, workdir: pathlib.Path, conf: pathlib.Path,
                concurrency: int, regex: str) -> pathlib.Path:
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import tempest,os;print(os.path.dirname(os.path.dirname(tempest.__file__)))"],
        capture_output=True, text=True, check=True).stdout.strip()
    run_dir = workdir / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir()
    (run_dir / ".stestr.conf").write_text(
        "[DEFAULT]\ntest_path=%s/tempest/test_discover\ntop_dir=%s\n"
        "group_regex=([^\\.]*\\.)*\n" % (site, site))
    env = dict(os.environ, TEMPEST_CONFIG_DIR=str(conf.parent),
               TEMPEST_CONFIG=conf.name, OS_TEST_TIMEOUT="600")
    for name in list(env):
        if name.startswith("OS_") and name != "OS_TEST_TIMEOUT":
            env.pop(name)
    stestr = str(venv / "bin" / "stestr")
    with open(workdir / "stestr.out", "w") as out:
        subprocess.run([stestr, "init"], cwd=run_dir, env=env, stdout=out,
                       stderr=subprocess.STDOUT, check=True)
        subprocess.run([stestr, "run", "--concurrency", str(concurrency), regex],
                       cwd=run_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
    subunit = workdir / "results.subunit"
    with open(subunit, "wb") as out:
        last = subprocess.run([stestr, "last", "--subunit"], cwd=run_dir, env=env,
                              stdout=out)
    if last.returncode != 0:
        raise SystemExit("Tempest recorded no run:\n%s"
                         % (workdir / "stestr.out").read_text()[-4000:])
    return subunit


def summarize(venv: pathlib.Path, subunit: pathlib.Path) -> dict:
    out = subprocess.run([str(venv / "bin" / "python"), str(HERE / "summarize.py"),
                          str(subunit)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def area_of(test_id: str) -> str:
    inner = re.search(r"\((tempest\.[^)]*)\)", test_id)
    name = inner.group(1) if inner else test_id
    for area, pattern in AREAS:
        if re.match(pattern, name):
            return area
    return "other"


def report(results: list[dict], workdir: pathlib.Path, seconds: float) -> int:
    counts: dict[str, dict[str, int]] = {a: {"passed": 0, "failed": 0, "skipped": 0}
                                         for a, _ in AREAS}
    failures, skips, unexplained = [], {}, []
    for test in results:
        area = counts.setdefault(area_of(test["id"]),
                                 {"passed": 0, "failed": 0, "skipped": 0})
        if test["status"] == "success":
            area["passed"] += 1
        elif test["status"] == "skip":
            area["skipped"] += 1
            reason = test.get("reason") or "(no reason given)"
            skips.setdefault(reason, []).append(test["id"])
            if features.skip_cause(reason) is None:
                unexplained.append(test)
        else:
            area["failed"] += 1
            failures.append(test)
    print("\n== Skips (%d reasons), each with the flag behind it ==" % len(skips))
    for reason, ids in sorted(skips.items(), key=lambda kv: -len(kv[1])):
        print("%4d  %s  [%s]" % (len(ids), reason.strip()[:160],
                                 features.skip_cause(reason) or "UNEXPLAINED"))
    if unexplained:
        print("\n== Skips no feature flag explains (%d): a failure ==" % len(unexplained))
        for test in unexplained:
            print("SKIP %s: %s" % (test["id"], test.get("reason")))
    print("\n== Failures (%d) ==" % len(failures))
    for test in failures:
        print("FAIL %s" % test["id"])
    (workdir / "failures.txt").write_text("".join(
        "=== %s\n%s\n" % (t["id"], t.get("details", "")) for t in failures))
    print("\n== Not run: %d entries of tools/tempest/features.py NOT_RUN (no Tempest "
          "flag), %d of PENDING (other branches' features) ==" % (
              len(features.NOT_RUN), len(features.PENDING)))
    print("\n== Tempest 47.0.0 against Flotilla (%.0f s) ==" % seconds)
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for area, numbers in counts.items():
        print("%-12s %4d passed, %3d failed, %3d skipped" % (
            area + ":", numbers["passed"], numbers["failed"], numbers["skipped"]))
        for key in total:
            total[key] += numbers[key]
    print("%d passed, %d failed, %d skipped" % (total["passed"], total["failed"],
                                                 total["skipped"]))
    (workdir / "summary.json").write_text(json.dumps(
        {"counts": counts, "seconds": round(seconds),
         "skips": {r: [len(i), features.skip_cause(r)] for r, i in skips.items()},
         "failures": [t["id"] for t in failures]}, indent=1))
    if failures:
        print("details: %s" % (workdir / "failures.txt"))
    return 1 if failures or unexplained or not total["passed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=str(ROOT / ".tempest-work"))
    parser.add_argument("--venv", default=str(ROOT / ".tempest-venv"),
                        help="the venv holding the pinned Tempest")
    parser.add_argument("--cloud", help="a running cloud's OS_* file (make demo "
                        "KEEP=1 prints it) instead of starting flotilla-all")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--regex", help="run only these tests (default: the "
                        "compute, image v2 and identity v3 API tests)")
    args = parser.parse_args(argv)
    workdir = pathlib.Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    venv = pathlib.Path(args.venv).resolve()
    if not (venv / "bin" / "stestr").exists():
        raise SystemExit("no Tempest in %s: run make tempest" % venv)
    check_conf(venv / "bin" / "python")
    started = time.monotonic()
    cloud = None
    try:
        if args.cloud:
            env = _read_cloud_file(pathlib.Path(args.cloud))
            auth_url = env["OS_AUTH_URL"].rstrip("/")
            admin = {"username": env["OS_USERNAME"], "password": env["OS_PASSWORD"],
                     "project": env.get("OS_PROJECT_NAME", "admin")}
        else:
            cloud = AllInOne(workdir, pathlib.Path(sys.executable).parent)
            auth_url = cloud.endpoint + "/identity/v3"
            admin = {"username": "admin", "password": cloud.password, "project": "admin"}
            _log("flotilla-all on %s (log: %s)" % (cloud.endpoint, cloud.log_path))
        made = bootstrap(auth_url, admin["username"], admin["password"], admin["project"],
                         workdir, real_guest=cloud is None)
        conf = workdir / "etc" / "tempest.conf"
        conf.parent.mkdir(exist_ok=True)
        write_conf(conf, auth_url, admin, made, workdir, test_driver=cloud is not None)
        _log("tempest.conf: %s; running with concurrency %d"
             % (conf, args.concurrency))
        subunit = run_tempest(venv, workdir, conf, args.concurrency,
                              args.regex or test_regex())
    finally:
        if cloud is not None:
            cloud.stop()
    return report(summarize(venv, subunit), workdir, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
