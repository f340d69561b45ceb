"""Run several ``flotilla-manage`` commands in one process.

    python -m tools.demo.manage_batch < commands.json

stdin holds a JSON list of ``{"argv": [...], "password": "..."}`` (the
password optional; it reaches the command as ``FLOTILLA_PASSWORD``, never on
a command line). The commands run in order through
:func:`flotilla.cmd.manage.main`, each with its own configuration, as
separate invocations would; the first that fails stops the batch and is the
exit status. Why: the bring-up's ten commands cost a Python start and
Flotilla's imports each, about a second apiece, for every e2e module.
"""

from __future__ import annotations

import json
import os
import sys

from flotilla.cmd import manage


def main() -> int:
    commands = json.load(sys.stdin)
    for command in commands:
        password = command.get("password")
        if password is None:
            os.environ.pop("FLOTILLA_PASSWORD", None)
        else:
            os.environ["FLOTILLA_PASSWORD"] = password
        try:
            status = manage.main(list(command["argv"]))
        except SystemExit as exc:   # argument and configuration errors
            status = exc.code if isinstance(exc.code, int) else 2
        sys.stdout.flush()
        if status:
            print("%s: %s failed (%s)" % (manage.PROG, " ".join(command["argv"][2:4]), status),
                  file=sys.stderr)
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
