"""Entry point for oslo-config-generator (namespace ``flotilla``)."""

from __future__ import annotations

from flotilla import conf


def list_opts() -> list:
    """Every option of every group, as oslo-config-generator expects."""
    result = []
    for module in conf.group_modules():
        for group, opts in module.list_opts().items():
            result.append((group, list(opts)))
    return result
