"""Corpora through 🤗 datasets (Parquet files, folders) and the --prompt-field / --response-field mapping."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from sra_viz.data import Example, load_examples
from sra_viz.errors import SraVizError

QA = [
    {"question": "What is 2+2?", "answer": "4", "topic": "maths"},
    {"question": "Capital of France?", "answer": "Paris is the capital of France.", "topic": "geo"},
    {"question": "Colour of the sky?", "answer": "Blue on a clear day.", "topic": "nature"},
]


def _parquet(path, rows) -> str:
    pd.DataFrame(rows).to_parquet(path, index=False)
    return str(path)


def test_parquet_rows_are_read_through_the_mapped_columns(tmp_path):
    path = _parquet(tmp_path / "qa.parquet", QA)
    examples = load_examples(path, prompt_field="question", response_field="answer")
    assert [(e.prompt, e.response) for e in examples] == [(r["question"], r["answer"]) for r in QA]
    as_text = load_examples(path, response_field="answer")  # the response column alone: plain texts
    assert [(e.prompt, e.text) for e in as_text] == [("", r["answer"]) for r in QA]


def test_parquet_with_known_columns_needs_no_mapping_and_folders_read_in_name_order(tmp_path):
    rows = [{"prompt": r["question"], "response": r["answer"]} for r in QA]
    folder = tmp_path / "shards"
    folder.mkdir()
    _parquet(folder / "b.parquet", rows[2:])
    _parquet(folder / "a.parquet", rows[:2])
    examples = load_examples(str(folder))
    assert examples == [Example(r["prompt"], r["response"], id=f"row-{i}") for i, r in enumerate(rows, 1)]


@pytest.mark.parametrize(
    "rows, fields, message",
    [
        (
            QA,
            ("question", "reply"),
            "qa.parquet has no column 'reply' (--response-field); its columns are question, answer, topic",
        ),
        (QA, ("query", "answer"), "qa.parquet has no column 'query' (--prompt-field)"),
        (QA, ("question", None), "--prompt-field 'question' was given without --response-field"),
        (
            [{"question": "q", "answer": 7}, {"question": "r", "answer": 8}],  # a column of numbers
            ("question", "answer"),
            "qa.parquet row 1: field 'answer' is a number (7), expected a string",
        ),
        ([{"q": "x", "a": "y"}], (None, None), "qa.parquet row 1: no recognised columns"),
    ],
)
def test_parquet_without_the_mapped_fields_is_one_clear_line(tmp_path, rows, fields, message):
    path = _parquet(tmp_path / "qa.parquet", rows)
    with pytest.raises(SraVizError) as err:
        load_examples(path, prompt_field=fields[0], response_field=fields[1])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_mapping_keeps_the_line_exact_errors_of_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text('{"question": "a?", "answer": "b"}\n{"question": "c?", "reply": "d"}\n')
    with pytest.raises(
        SraVizError,
        match=r"qa.jsonl line 2: missing field 'response': expected columns "
        r"'question' and 'answer' \(--prompt-field, --response-field\), found question, reply",
    ):
        load_examples(str(jsonl), prompt_field="question", response_field="answer")
    csv = tmp_path / "qa.csv"
    csv.write_text("question,reply\na?,b\n")
    with pytest.raises(SraVizError, match=r"qa.csv line 1 \(header\): missing column 'response'"):
        load_examples(str(csv), prompt_field="question", response_field="answer")
    csv.write_text("Question,Answer\na?,b\n")
    assert load_examples(str(csv), prompt_field="question", response_field="answer") == [
        Example("a?", "b", id="line-2")
    ]


def test_a_broken_parquet_file_is_one_clear_line(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(SraVizError, match=r"broken.parquet could not be read as parquet"):
        load_examples(str(path))


def test_cli_distill_trains_on_parquet_with_tensorboard(tiny_pair_dirs, tmp_path):
    rows = [
        {"question": f"Question {i}: what is {i} plus {i}?", "answer": f"It is {2 * i}, of course."}
        for i in range(16)
    ]
    data = _parquet(tmp_path / "qa.parquet", rows)
    teacher, student = (str(d) for d in tiny_pair_dirs)
    common = [
        sys.executable,
        "-m",
        "sra_viz",
        "distill",
        "--teacher",
        teacher,
        "--student",
        student,
        "--data",
        data,
        "--quiet",
    ]
    bad = subprocess.run(
        [*common, "--prompt-field", "question", "--response-field", "reply", "--out", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "qa.parquet has no column 'reply' (--response-field)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    out = tmp_path / "run"
    ok = subprocess.run(
        [
            *common,
            "--prompt-field",
            "question",
            "--response-field",
            "answer",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--max-length",
            "32",
            "--student-variant",
            "truncated",
            "--student-k",
            "1",
            "--probe-size",
            "2",
            "--heldout-size",
            "1",
            "--eval-size",
            "0",
            "--report-to",
            "tensorboard",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ok.returncode == 0, ok.stderr
    rows_written = [line for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows_written) == 3  # step 0 evaluation, steps 1 and 2
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


# ---------------------------------------------------------------- chat rows: messages = [{role, content}]

CHATS = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": " 4 "},
        ]
    },
    {  # two rounds, then a user turn the data never answers: the last assistant turn is the response
        "messages": [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "assistant", "content": "Rome."},
            {"role": "user", "content": "Thanks!"},
        ]
    },
]
CHAT_EXAMPLES = [
    ("System: Be brief.\nUser: What is 2+2?\nAssistant:", "4"),
    ("User: Capital of France?\nAssistant: Paris.\nUser: And of Italy?\nAssistant:", "Rome."),
]


def test_chat_messages_become_the_turns_before_the_last_assistant_turn_and_that_turn(tmp_path):
    # UltraChat-style rows also carry a prompt column (without a response): messages win
    rows = [{"prompt": r["messages"][0]["content"], "messages": r["messages"]} for r in CHATS]
    parquet = load_examples(_parquet(tmp_path / "chat.parquet", rows))
    assert [(e.prompt, e.response) for e in parquet] == CHAT_EXAMPLES
    assert [e.text[e.prompt_end :] for e in parquet] == [r for _, r in CHAT_EXAMPLES]  # the trained part
    jsonl = tmp_path / "chat.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in CHATS) + "\n")
    assert [(e.prompt, e.response) for e in load_examples(str(jsonl))] == CHAT_EXAMPLES
    folder = tmp_path / "shards"  # a folder of JSONL files goes through datasets' json builder
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps(CHATS[0]) + "\n")
    (folder / "b.jsonl").write_text(json.dumps(CHATS[1]) + "\n")
    assert [(e.prompt, e.response) for e in load_examples(str(folder))] == CHAT_EXAMPLES


USER = {"role": "user", "content": "Hi?"}


@pytest.mark.parametrize(
    "messages, message",
    [
        ("Hi there", "field 'messages' is a string ('Hi there'), expected a list of {role, content} objects"),
        ([], "field 'messages' is an empty list, expected a list of {role, content} objects"),
        (
            [USER, "Hello!"],
            "messages turn 2 is a string ('Hello!'), expected an object with role and content",
        ),
        ([USER, {"role": "assistant"}], "messages turn 2 'content' is missing, expected a string"),
        (
            [USER, {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}],
            "messages turn 2 'content' is a list ([{'type': 'text', 'text': 'Hello'}]), expected a string",
        ),
        ([{"role": None, "content": "Hi?"}], "messages turn 1 'role' is null (None), expected a string"),
        ([{"role": " ", "content": "Hi?"}], "messages turn 1 has a blank role"),
        ([USER], "messages hold no assistant turn (roles: user): the last assistant turn is the response"),
        (
            [USER, {"role": "Assistant", "content": "  "}],
            "empty response: messages turn 2, the last assistant turn, is blank",
        ),
    ],
)
def test_malformed_messages_are_one_clear_line(tmp_path, messages, message):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(CHATS[0]) + "\n" + json.dumps({"messages": messages}) + "\n")
    with pytest.raises(SraVizError) as err:
        load_examples(str(path))
    assert f"chat.jsonl line 2: {message}" in str(err.value) and "\n" not in str(err.value)


def test_malformed_messages_in_parquet_and_csv_name_the_row(tmp_path):
    # Parquet stores one struct per turn: a turn without content reads back as content None
    rows = [CHATS[0], {"messages": [USER, {"role": "assistant"}]}]
    with pytest.raises(SraVizError, match=r"^chat.parquet row 2: messages turn 2 'content' is null \(None\)"):
        load_examples(_parquet(tmp_path / "chat.parquet", rows))
    csv = tmp_path / "chat.csv"  # a CSV cell is text, never a list of turns
    csv.write_text('messages\n"[{""role"": ""user""}]"\n')
    with pytest.raises(
        SraVizError, match=r"^chat.csv line 2: field 'messages' is a string .* expected a list"
    ):
        load_examples(str(csv))
