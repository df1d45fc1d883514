"""data/blend.py: blend files, the line index, the three sampling methods, the paper's blend and train_sft --blend.

References: generated files whose every line has a known id, so what a blend yields is checked with plain Python
set and Counter arithmetic over those ids; byte offsets recomputed with bytes.split; data.record.load_records for
"use all" on the toy split; the seeds' SFT table, transcribed below, for data/blends/m2rl_sft.json; the binomial
law for how often random sampling picks each line.
"""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from data.blend import BlendError, LineIndex, Source, draw, index_lines, load_blend, parse_blend, realise
from data.record import RecordError, load_records

ROOT = Path(__file__).resolve().parents[1]

# The seeds' SFT blend: (name in m2rl_sft.json, dataset, method, samples, times)
PAPER = [("formal_proofs", "Nemotron-Math-Proofs-v1", "sample", 335_122, None),
         ("math", "Nemotron-Math-v2", "sample", 1_878_601, None),
         ("math_tools", "Nemotron-Math-v2", "all", 1_071_924, None),
         ("science", "Nemotron-Science-v1", "repeat", 2_263_340, 10),
         ("code", "Nemotron-Competitive-Programming-v1", "all", 3_927_984, None),
         ("chat", "Nemotron-Instruction-Following-Chat-v1", "repeat", 4_309_780, 10),
         ("conversational_agent", "Nemotron-Agentic-v1", "all", 335_122, None)]
PAPER_TOTAL = 14_121_873


def record_lines(path: Path, prefix: str, n: int, blank_at=()) -> list[str]:
    """n SFT-only records with ids prefix-0 .. prefix-(n-1), a blank line before each index in blank_at."""
    ids, text = [], ""
    for i in range(n):
        text += "\n" * (i in blank_at)
        ids.append(f"{prefix}-{i}")
        text += json.dumps({"id": ids[-1], "domain": "math", "messages": [{"role": "user", "content": f"q{i}"}],
                            "verifier": {}, "response": {"content": f"a{i}", "reasoning_content": ""}}) + "\n"
    path.write_text(text)
    return ids


def blend_of(tmp_path, *sources, seed=0):
    """A blend file holding `sources` (converter "record" unless given), loaded back."""
    path = tmp_path / "blend.json"
    path.write_text(json.dumps({"seed": seed, "sources": [{"converter": "record"} | s for s in sources]}))
    return load_blend(path)


def ids_of(blend, seed=None):
    return [r.id for r in realise(blend, seed).records()]


def test_index_offsets_and_line_numbers_match_bytes_split(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n  \n{"b": 2}\n\n{"c": 3}')  # CRLF, blank and blank-looking lines, no final \n
    index = index_lines(path)
    starts = np.cumsum([0] + [len(line) + 1 for line in path.read_bytes().split(b"\n")])[:-1]
    solid = [n for n, line in enumerate(path.read_bytes().split(b"\n")) if line.strip()]
    assert index.offsets.tolist() == [int(starts[n]) for n in solid]
    assert [index.line_number(i) for i in range(len(solid))] == [n + 1 for n in solid]


def test_sample_draws_n_distinct_lines_deterministic_per_seed(tmp_path):
    ids = record_lines(tmp_path / "a.jsonl", "a", 400) + record_lines(tmp_path / "b.jsonl", "b", 600, blank_at={3})
    blend = blend_of(tmp_path, {"name": "s", "paths": ["a.jsonl", "b.jsonl"], "method": "sample", "samples": 300})
    first = ids_of(blend)
    assert len(first) == len(set(first)) == 300 and set(first) <= set(ids)
    assert first == ids_of(blend)                             # same seed, same draw
    assert first == [i for i in ids if i in set(first)]       # read back in file order
    assert {i[0] for i in first} == {"a", "b"}                # drawn over both files
    assert set(ids_of(blend, seed=1)) != set(first)           # another seed, another draw


def test_use_all_keeps_every_line_once_in_file_order(tmp_path):
    ids = record_lines(tmp_path / "a.jsonl", "a", 30, blank_at={0, 7}) + record_lines(tmp_path / "b.jsonl", "b", 20)
    blend = blend_of(tmp_path, {"name": "all", "paths": ["*.jsonl"], "method": "all", "samples": 50})
    assert ids_of(blend) == ids
    assert ids_of(blend, seed=5) == ids


def test_repeat_k_keeps_every_line_k_times(tmp_path):
    ids = record_lines(tmp_path / "a.jsonl", "a", 25)
    blend = blend_of(tmp_path, {"name": "r", "paths": ["a.jsonl"], "method": "repeat", "times": 3, "samples": 75})
    assert ids_of(blend) == [i for i in ids for _ in range(3)]


def test_repeat_to_n_upsamples_every_line_then_draws_the_remainder(tmp_path):
    ids = record_lines(tmp_path / "a.jsonl", "a", 40)
    blend = blend_of(tmp_path, {"name": "up", "paths": ["a.jsonl"], "method": "repeat", "samples": 100})
    counts = Counter(ids_of(blend))
    assert set(counts) == set(ids) and sum(counts.values()) == 100
    assert Counter(counts.values()) == {2: 20, 3: 20}         # 100 = 2 x 40 + 20 drawn once more
    other = Counter(ids_of(blend, seed=1))
    assert sum(other.values()) == 100 and other != counts


def test_a_source_draw_depends_on_the_seed_and_its_name_only(tmp_path):
    record_lines(tmp_path / "a.jsonl", "a", 200)
    record_lines(tmp_path / "b.jsonl", "b", 200)
    alone = blend_of(tmp_path, {"name": "s", "paths": ["a.jsonl"], "method": "sample", "samples": 50})
    joined = blend_of(tmp_path, {"name": "t", "paths": ["b.jsonl"], "method": "sample", "samples": 50},
                      {"name": "s", "paths": ["a.jsonl"], "method": "sample", "samples": 50})
    assert ids_of(alone) == ids_of(joined)[50:]
    line_numbers = [i.split("-")[1] for i in ids_of(joined)]
    assert line_numbers[:50] != line_numbers[50:]             # same-sized sources, different names: different lines


def test_items_read_by_seeking_and_in_shares_are_the_samples(tmp_path):
    """Every method over two files (a blank line, a file shared by two sources): reading item i by seeking, and
    reading the lines in 3 interleaved shares (3 ranks), each item as often as copies() says, give exactly the
    samples, with ids counted by hand (record_lines' ids; the draws' own sizes)."""
    a = record_lines(tmp_path / "a.jsonl", "a", 30, blank_at={4})
    b = record_lines(tmp_path / "b.jsonl", "b", 20)
    blend = blend_of(tmp_path, {"name": "s", "paths": ["a.jsonl", "b.jsonl"], "method": "sample", "samples": 12},
                     {"name": "all", "paths": ["b.jsonl"], "method": "all"},
                     {"name": "k", "paths": ["a.jsonl"], "method": "repeat", "times": 2},
                     {"name": "up", "paths": ["b.jsonl"], "method": "repeat", "samples": 47})
    realised = realise(blend)
    copies = realised.copies()
    assert realised.items == 12 + 20 + 30 + 20 and copies.sum() == realised.total == 12 + 20 + 60 + 47
    by_seek = Counter()
    for item in range(realised.items):
        by_seek[realised.read(item).id] += int(copies[item])
    assert by_seek == Counter(ids_of(blend))
    # by hand: a line of a is 2 samples (k), one of b 3 (all + up's 2 passes); 12 (s) + 7 (up's extra) more
    assert {by_seek[i] - 2 for i in a} <= {0, 1} and {by_seek[i] - 3 for i in b} <= {0, 1, 2}
    assert sum(by_seek[i] - 2 for i in a) + sum(by_seek[i] - 3 for i in b) == 12 + 7
    shares = [list(realised.lines(part=p, parts=3)) for p in range(3)]
    assert sorted(item for share in shares for item, _, _ in share) == list(range(realised.items))
    assert all(item % 3 == p for p, share in enumerate(shares) for item, _, _ in share)
    assert all(record == realised.read(item) and k == copies[item] for share in shares for item, k, record in share)


def test_random_sampling_picks_each_line_with_probability_n_over_size():
    """Binomial reference: over 400 seeds each of 1000 lines is drawn 400 * 0.3 = 120 times on average (sd 9.2)."""
    index = LineIndex(Path("x"), np.arange(1000, dtype=np.int64), np.zeros(0, np.int64))
    source = Source("s", [], "record", "sample", 300, None, None, "test")
    hits = sum(np.bincount(draw(source, [index], seed).extra, minlength=1000) for seed in range(400))
    assert hits.sum() == 400 * 300
    assert abs(hits.std() - (400 * 0.3 * 0.7) ** 0.5) < 1.5
    assert np.abs(hits - 120).max() < 6 * (400 * 0.3 * 0.7) ** 0.5
    deciles = hits.reshape(10, 100).sum(1)                     # no drift along the file: each decile ~12000 (sd 92)
    assert np.abs(deciles - 12000).max() < 6 * 92


def test_paper_blend_matches_the_seeds_table():
    blend = json.loads((ROOT / "data/blends/m2rl_sft.json").read_text())
    rows = [(s["name"], s["paths"][0].split("/")[1], s["method"], s["samples"], s.get("times"))
            for s in blend["sources"]]
    assert rows == PAPER
    assert sum(s["samples"] for s in blend["sources"]) == PAPER_TOTAL
    assert all(s["converter"] == "nemotron_sft" and s["paths"][0].startswith("$NEMOTRON_DATA/")
               for s in blend["sources"])


def test_paper_blend_at_one_ten_thousandth_realises_the_table_shares(tmp_path, monkeypatch):
    """Same methods on files 1/10,000 the size: every count exact, every share within 0.25 points of the table's
    (the repeat x10 sources round 22.6 and 43.1 lines to whole lines)."""
    monkeypatch.setenv("NEMOTRON_DATA", str(tmp_path))
    blend = json.loads((ROOT / "data/blends/m2rl_sft.json").read_text())
    expected = {}
    for source in blend["sources"]:
        times = source.get("times") or 1
        lines = round(source["samples"] / times / 10_000)
        # a sampled source's file holds more lines than are drawn: the scaled draw is the table's count / 10,000
        in_file = 2 * lines if source["method"] == "sample" else lines
        folder = tmp_path / source["paths"][0].split("/")[1] / source["name"]
        folder.mkdir(parents=True)
        with open(folder / "part.jsonl", "w") as f:
            for i in range(in_file):
                f.write(json.dumps({"uuid": f"{source['name']}-{i}", "messages": [
                    {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) + "\n")
        source["paths"] = [str(folder / "*.jsonl")]
        source["samples"] = expected[source["name"]] = lines * times
    realised = realise(parse_blend(blend, tmp_path, "scaled"))
    kept = Counter(r.id.rsplit("-", 1)[0] for r in realised.records())
    assert kept == expected and realised.total == sum(expected.values())
    for name, _, _, samples, _ in PAPER:
        assert abs(kept[name] / realised.total - samples / PAPER_TOTAL) < 0.0025, name
    table = realised.table()
    assert f"| science | science | nemotron_sft | repeat x10 | 23 | 230 | {100 * 230 / realised.total:.2f}% |" in table


def test_toy_blend_is_the_toy_sft_split_in_the_former_default_order():
    realised = realise(load_blend(ROOT / "data/blends/toy_sft.json"))
    reference = [r for p in sorted((ROOT / "data/toy/sft").glob("*.jsonl")) for r in load_records(p)]
    assert list(realised.records()) == reference


@pytest.mark.parametrize("change, message", [
    ({"paths": ["nope.jsonl"]}, "missing file: nothing matches"),
    ({"paths": ["$M2RL_UNSET_VARIABLE/a.jsonl"]}, "uses $M2RL_UNSET_VARIABLE, which is not set"),
    ({"converter": "csv"}, "unknown converter 'csv'"),
    ({"method": "shuffle"}, "unknown method 'shuffle'"),
    ({"samples": -5}, "key 'samples' must be a non-negative integer, got -5"),
    ({"method": "repeat", "times": -2}, "key 'times' must be a positive integer"),
    ({"samples": 11}, "draws 11 lines without replacement but the files hold 10"),
    ({"method": "all", "samples": 12}, "the blend states 12 samples, but all of these files gives 10"),
    ({"method": "repeat", "times": 2, "samples": 12}, "states 12 samples, but repeat x2 of these files gives 20"),
    ({"method": "repeat", "samples": 5}, "must be at least the files' 10 lines"),
    ({"domain": "math"}, "key 'domain' is needed with converter 'nemotron_sft'"),
    ({"sample": 3}, "unknown key 'sample'"),
])
def test_bad_blend_names_the_file_entry_and_key(tmp_path, change, message):
    record_lines(tmp_path / "a.jsonl", "a", 10)
    entry = {"name": "mine", "paths": ["a.jsonl"], "method": "sample", "samples": 3} | change
    with pytest.raises(BlendError) as e:
        realise(blend_of(tmp_path, entry))
    assert f"blend.json: sources[0] ('mine')" in str(e.value) and message in str(e.value)


def test_bad_line_names_file_line_and_source_or_is_counted(tmp_path):
    record_lines(tmp_path / "a.jsonl", "a", 5)
    with open(tmp_path / "a.jsonl", "a") as f:
        f.write("{not json\n")
    blend = blend_of(tmp_path, {"name": "mine", "paths": ["a.jsonl"], "method": "repeat", "times": 2})
    with pytest.raises(RecordError, match=r"a\.jsonl:6: not valid JSON .* \(blend source 'mine'\)"):
        list(realise(blend).records())
    realised = realise(blend)
    assert len(list(realised.records(skip_bad=True))) == 10
    assert realised.dropped == [Counter({"bad: json": 2})] and realised.kept == [Counter({"math": 10})]


def test_rows_the_converter_skips_are_counted_per_copy(tmp_path):
    rows = [{"uuid": "u1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            {"uuid": "u2", "tools": [{"type": "function"}], "messages": [{"role": "user", "content": "run"},
                                                                         {"role": "assistant", "content": "ok"}]}]
    (tmp_path / "n.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    realised = realise(blend_of(tmp_path, {"name": "chat", "paths": ["n.jsonl"], "converter": "nemotron_sft",
                                           "domain": "if", "method": "repeat", "times": 3}))
    assert [r.id for r in realised.records()] == ["u1"] * 3
    assert realised.dropped == [Counter({"skipped: uses tools (out of scope)": 3})]
    assert "| chat | if | nemotron_sft | repeat x3 | 2 | 6 | 100.00% | 3 | 3 |" in realised.table()


def test_cli_prints_and_writes_the_table_and_reports_bad_blends(tmp_path):
    record_lines(tmp_path / "a.jsonl", "a", 10)
    blend_of(tmp_path, {"name": "mine", "paths": ["a.jsonl"], "method": "sample", "samples": 4})
    run = subprocess.run([sys.executable, "-m", "data.blend", str(tmp_path / "blend.json"), "--convert",
                          "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    row = "| mine | (per line) | record | sample | 10 | 4 | 100.00% | 4 | 0 |"
    assert row in run.stdout and row in (tmp_path / "out/blend.md").read_text()
    saved = json.loads((tmp_path / "out/blend.json").read_text())
    assert saved["total"] == 4 and saved["sources"][0]["kept"] == {"math": 4}
    (tmp_path / "bad.json").write_text(json.dumps({"seed": 0, "sources": [{"name": "x", "paths": ["a.jsonl"],
                                                                           "converter": "record", "method": "every"}]}))
    run = subprocess.run([sys.executable, "-m", "data.blend", str(tmp_path / "bad.json")], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 1 and "error: " in run.stderr and "unknown method 'every'" in run.stderr


def test_train_sft_blend_trains_on_the_realised_blend_and_writes_its_table(tmp_path):
    for domain in ("math", "code"):
        (tmp_path / f"{domain}.jsonl").write_text("".join(
            (ROOT / f"data/toy/sft/{domain}.jsonl").read_text().splitlines(keepends=True)[:16]))
    blend_of(tmp_path, {"name": "math", "paths": ["math.jsonl"], "method": "sample", "samples": 8},
             {"name": "code", "paths": ["code.jsonl"], "method": "repeat", "times": 2})
    run = subprocess.run([sys.executable, str(ROOT / "train_sft.py"), "--blend", str(tmp_path / "blend.json"),
                          "--out", str(tmp_path / "run"), "--seq-len", "128", "--batch-rows", "4", "--micro-rows",
                          "4", "--epochs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    saved = json.loads((tmp_path / "run/blend.json").read_text())
    assert [(s["name"], s["samples"], s["kept"]) for s in saved["sources"]] == [
        ("math", 8, {"math": 8}), ("code", 32, {"code": 32})]
    assert "| code | (per line) | record | repeat x2 | 16 | 32 | 80.00% | 32 | 0 |" in run.stdout
    assert json.loads((tmp_path / "run/args.json").read_text())["blend"] == str(tmp_path / "blend.json")
    assert (tmp_path / "run/metrics.jsonl").read_text().count("\n") >= 1
