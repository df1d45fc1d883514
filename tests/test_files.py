"""files.py: the one atomic writer and the one JSON Lines reader. References: the bytes and objects written by hand,
json.loads line by line for what a reader must return, and the directory listing for what a failed write leaves."""
import json

import pytest

from files import JSONLError, read_jsonl, write_atomic


def test_write_atomic_writes_text_bytes_and_streamed_chunks(tmp_path):
    write_atomic(tmp_path / "new" / "a.txt", "é\n")
    write_atomic(tmp_path / "b.bin", b"\x00\xff")
    write_atomic(tmp_path / "c.jsonl", (json.dumps({"i": i}) + "\n" for i in range(3)))
    assert (tmp_path / "new" / "a.txt").read_bytes() == "é\n".encode()
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert (tmp_path / "c.jsonl").read_text() == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'


def test_a_stream_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")

    def chunks():
        yield "half of the new file\n"
        raise ValueError("the source broke")
    with pytest.raises(ValueError, match="the source broke"):
        write_atomic(path, chunks())
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"] and path.read_text() == "old\n"


def test_read_jsonl_numbers_lines_and_names_the_bad_one(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = ['{"a": 1}', "", '{"a": 2}', "[1, 2]", '{"a": 3', '{"a": 4}']
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JSONLError, match=f"^{path}:4: a line must hold a JSON object, got list$") as error:
        list(read_jsonl(path))
    assert error.value.key == "line"
    bad = []
    assert list(read_jsonl(path, bad)) == [(n, json.loads(lines[n - 1])) for n in (1, 3, 6)]
    assert [(e.key, str(e).split(": ")[0]) for e in bad] == [("line", f"{path}:4"), ("json", f"{path}:5")]


def test_torn_tail_drops_only_a_torn_last_line(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo')
    assert list(read_jsonl(path, torn_tail=True)) == [(1, {"step": 1})]
    assert f"{path}:2: dropped a torn last line" in capsys.readouterr().out
    with pytest.raises(JSONLError, match=f"^{path}:2: not valid JSON"):
        list(read_jsonl(path))
    path.write_text('{"step": 1, "lo\n{"step": 2}\n')
    with pytest.raises(JSONLError, match=f"^{path}:1: not valid JSON"):
        list(read_jsonl(path, torn_tail=True))
