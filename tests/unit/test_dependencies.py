"""Every third-party module the product imports comes from a distribution
setup.cfg declares: a module that is only in the development virtualenv
(pulled in by a test or bench extra, or by another package) breaks a real
install, as oslo_utils once broke flotilla-compute under the systemd tier."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("flotilla", "api", "compute", "conductor", "scheduler", "volume")


def _imported_top_levels() -> dict[str, str]:
    """Third-party top-level module -> one file that imports it."""
    local = set(PACKAGES) | {"tests", "tools", "__future__"}
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


def _declared() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = parser["options"]["install_requires"].split("\n")
    return {re.split(r"[<>=!\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for line in lines if line.strip()}


def test_every_imported_distribution_is_declared():
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    missing = {}
    for module, where in _imported_top_levels().items():
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = (sorted(names), where)
    assert not missing, "imported but not in setup.cfg install_requires: %s" % missing
