"""What commands return and how it is printed.

A command returns a :class:`Table` (rows under column headings), a
:class:`Record` (field/value pairs of one object) or None. ``-f table``
(the default) prints plain columns aligned with spaces; ``-f json`` prints
a JSON list of objects (tables) or one object (records), keyed by the
column or field names. Values that are lists or dicts are shown as
compact JSON in tables; None is an empty cell.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TextIO


@dataclasses.dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]


@dataclasses.dataclass
class Record:
    fields: dict[str, Any]


FORMATS = ("table", "json")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):
        return "True" if value else "False"
    # One line per row: a newline in a value would break the columns.
    return str(value).replace("\r", "").replace("\n", " ")


def format_table(columns: list[str], rows: list[list[Any]]) -> str:
    """Columns left-aligned to their widest cell, a dashed rule under the
    header, two spaces between columns, no trailing spaces."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def render(result: Table | Record | None, fmt: str, stream: TextIO) -> None:
    if result is None:
        return
    if fmt == "json":
        if isinstance(result, Table):
            data: Any = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        else:
            data = result.fields
        stream.write(json.dumps(data, indent=2, sort_keys=isinstance(result, Record),
                                default=str) + "\n")
        return
    if isinstance(result, Table):
        stream.write(format_table(result.columns, result.rows) + "\n")
    else:
        rows = [[k, v] for k, v in sorted(result.fields.items())]
        stream.write(format_table(["Field", "Value"], rows) + "\n")
