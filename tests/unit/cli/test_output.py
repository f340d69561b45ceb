from __future__ import annotations

import io
import json

from flotilla.cli import output


def test_table_is_aligned_plain_text():
    text = output.format_table(["ID", "Name"], [["1", "tiny"], ["22", None], ["3", "a\nb"]])
    assert text.splitlines() == ["ID  Name", "--  ----", "1   tiny", "22", "3   a b"]


def test_record_and_json():
    stream = io.StringIO()
    output.render(output.Record({"b": {"x": 1}, "a": None}), "table", stream)
    assert stream.getvalue().splitlines() == [
        "Field  Value", "-----  -------", "a", 'b      {"x":1}']
    stream = io.StringIO()
    output.render(output.Table(["ID", "Up"], [[1, True]]), "json", stream)
    assert json.loads(stream.getvalue()) == [{"ID": 1, "Up": True}]
    stream = io.StringIO()
    output.render(None, "json", stream)
    assert stream.getvalue() == ""
