"""Reads a subunit v2 stream; prints one JSON list of the tests in it:
id, status (success, fail, skip, ...), the skip reason, a failure's details.

Runs with the Tempest venv's Python (python-subunit and testtools come with
stestr there), called by tools/tempest/run.py.
"""

import json
import sys

import subunit
import testtools


def main(path):
    results = []

    def on_test(test):
        if test["status"] in ("exists", "inprogress"):
            return
        entry = {"id": test["id"], "status": test["status"]}
        details = test.get("details") or {}
        if test["status"] == "skip":
            reason = details.get("reason")
            entry["reason"] = reason.as_text() if reason is not None else ""
        elif test["status"] != "success":
            entry["details"] = "\n".join(
                "%s:\n%s" % (name, content.as_text()[-6000:])
                for name, content in details.items()
                if name in ("traceback", "reason"))
        results.append(entry)

    with open(path, "rb") as stream:
        case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        case.run(result)
        result.stopTestRun()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
