"""The command line, run as a user runs it: a subprocess, real models, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TEXT = "Tokenizers disagree about 東京 and 👩‍👩‍👧 emoji."


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sra_viz", *args], capture_output=True, text=True, timeout=600
    )


def test_align_json_round_trips_and_covers_the_text():
    out = run("align", TEXT, "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    from sra_viz.alignment import SpanAlignment

    alignment = SpanAlignment.from_json(out.stdout)
    assert alignment.text == TEXT == data["text"]
    assert b"".join(TEXT.encode()[s.byte_start : s.byte_end] for s in alignment.spans) == TEXT.encode()


def test_align_table_prints_stats():
    out = run("align", TEXT, "--word")
    assert out.returncode == 0, out.stderr
    assert "one_to_one_share" in out.stdout and "spans:" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("align", "   "), "text is empty"),
        (("align",), "no text given"),
        (("align", "--file", "/no/such/file.txt"), "cannot read text file '/no/such/file.txt'"),
        (("align", "hi", "--teacher", "./no/such/model"), "no such file or folder: './no/such/model'"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_the_parser_and_a_bad_option_load_neither_torch_nor_transformers():
    """`sra-viz --help` and an option error answer at once: the parser is built from DistillConfig alone."""
    probe = (
        "import sys\n"
        "from sra_viz.cli import main\n"
        "try:\n"
        "    main(['distill', '--method', 'bogus'])\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 2, stop.code\n"
        "heavy = sorted({'torch', 'transformers'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "invalid choice: 'bogus'" in out.stderr


@pytest.mark.slow
def test_features_prints_salient_spans():
    out = run("features", "The capital of France is Paris.", "--top", "3")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert "saliency" in lines[0] and len(lines) == 4


@pytest.mark.slow
def test_models_info_shows_both_sides():
    out = run("models", "info")
    assert out.returncode == 0, out.stderr
    assert "teacher" in out.stdout and "student" in out.stdout
    assert "Gemma3ForCausalLM" in out.stdout and "LlamaForCausalLM" in out.stdout


def test_cache_info_and_clear_report_the_teacher_cache(tmp_path, monkeypatch):
    import torch

    from sra_viz.distill.teacher_cache import TeacherCache

    monkeypatch.setenv("SRA_VIZ_TEACHER_CACHE", str(tmp_path))
    TeacherCache(tmp_path, 1 << 20).put({k: {"centers/0": torch.ones(3, 4)} for k in ("a", "b")})
    info = run("cache", "info")
    assert info.returncode == 0, info.stderr
    lines = dict(line.split("\t", 1) for line in info.stdout.splitlines())
    assert lines["folder"] == str(tmp_path) and lines["texts"] == "2" and lines["files"] == "1"
    cleared = run("cache", "clear")
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 2 cached texts in 1 files")
    assert not list(tmp_path.glob("shard-*")) and "texts\t0" in run("cache", "info").stdout
