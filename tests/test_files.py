"""sqlwright.files: the one JSON-lines reader, the append-only writer, atomic writes."""

from __future__ import annotations

import json

import pytest

from sqlwright.errors import UserError
from sqlwright.files import (
    JsonlAppender,
    atomic_path,
    atomic_write_jsonl,
    atomic_write_text,
    iter_jsonl,
    read_jsonl,
    read_log,
    repair_partial_line,
)


def test_reader_names_file_and_line_and_skips_blank_lines(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"a": "\xe2\x80\xa8"}\r\n{"a": \n')
    with pytest.raises(UserError, match=r"x\.jsonl:4: not valid JSON \(.*\); rebuild it$"):
        list(iter_jsonl(p, hint="rebuild it"))
    p.write_bytes(b'{"a": 1}\n\n{"a": "\xe2\x80\xa8"}\n')  # U+2028 inside a string: still one record
    assert list(iter_jsonl(p)) == [(1, {"a": 1}), (3, {"a": "\u2028"})]
    assert read_jsonl(p, text='{"b": 2}\n\n') == [{"b": 2}]
    with pytest.raises(UserError, match=r"nope\.jsonl: dataset split not found"):
        read_jsonl(tmp_path / "nope.jsonl", what="dataset split")
    p.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"x\.jsonl:2: not UTF-8 text"):
        read_jsonl(p)


def test_partial_last_line_is_cut_and_appender_continues(tmp_path, monkeypatch):
    p = tmp_path / "log" / "run.jsonl"
    with JsonlAppender(p, fsync=True) as w:
        w.write({"id": 1})
        w.write({"id": 2, "text": "é"})
    with open(p, "a", encoding="utf-8") as f:
        f.write('{"id": 3, "te')  # a killed process
    assert [r["id"] for r in read_log(p)] == [1, 2]  # cut, to be redone
    assert p.read_text(encoding="utf-8").endswith("}\n")
    assert not repair_partial_line(p) and not repair_partial_line(tmp_path / "none.jsonl")
    monkeypatch.setenv("SQLWRIGHT_FSYNC", "1")
    with JsonlAppender(p) as w:
        w.write({"id": 3})
    assert [r["id"] for r in read_log(p)] == [1, 2, 3]
    p.write_text('{"id": 1}\n["x"]\n')
    with pytest.raises(UserError, match=r"run\.jsonl:2: not a record of this predictions file \(no 'id'\); check --out"):
        read_log(p, what="predictions file", hint="check --out")
    assert read_log(tmp_path / "missing.jsonl") == []
    big = tmp_path / "big.jsonl"  # the last newline far back: found block by block
    big.write_text('{"id": 0}\n' + "x" * 200_000)
    assert repair_partial_line(big) and big.read_text() == '{"id": 0}\n'


def test_atomic_writes_land_whole_or_not_at_all(tmp_path):
    p = tmp_path / "summary.json"
    atomic_write_text(p, "old\n")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert p.read_text() == "old\n" and sorted(x.name for x in tmp_path.iterdir()) == ["summary.json"]
    atomic_write_jsonl(tmp_path / "e.jsonl", [{"id": 1, "b": b"\x01"}], default=lambda v: v.hex())
    assert json.loads((tmp_path / "e.jsonl").read_text()) == {"id": 1, "b": "01"}
    atomic_write_text(p, "new\n", fsync=True)
    assert p.read_text() == "new\n" and len(list(tmp_path.iterdir())) == 2
