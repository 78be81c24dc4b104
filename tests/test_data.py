"""Tests of the data layer: bundled corpus, user files in every schema and format, splits, batches, samples.

Run: .venv/bin/python -m pytest tests/test_data.py -q
"""

from __future__ import annotations

import csv
import io
import json
import re
from importlib import resources
from pathlib import Path

import pytest

from sra_viz.data import (
    RESPONSE_SEPARATOR,
    Example,
    batches,
    format_prompt,
    load_bundled_corpus,
    load_examples,
    split_examples,
    to_frame,
)
from sra_viz.errors import SraVizError
from sra_viz.samples import GEOMETRY_TEXTS, SAMPLES

# ---------------------------------------------------------------- bundled corpus


@pytest.fixture(scope="module")
def corpus() -> list[Example]:
    return load_bundled_corpus()


def test_bundled_corpus_size_ids_and_categories(corpus):
    assert len(corpus) >= 300
    assert len({ex.id for ex in corpus}) == len(corpus) >= 300
    assert all(ex.category.strip() and ex.prompt.strip() and ex.response.strip() for ex in corpus)
    categories = {ex.category for ex in corpus}
    assert {
        "open_qa",
        "closed_qa",
        "brainstorming",
        "summarization",
        "classification",
        "rewriting",
    } <= categories
    assert {"creative_writing", "facts", "numbers", "code", "formatting", "multilingual"} <= categories
    assert len({(ex.prompt, ex.response) for ex in corpus}) == len(corpus)  # no duplicated pairs


def test_bundled_corpus_file_lines_are_dolly_objects():
    raw = (resources.files("sra_viz") / "corpus" / "corpus.jsonl").read_text(encoding="utf-8")
    lines = raw.split("\n")
    assert lines[-1] == ""  # ends with a newline, no blank lines inside
    for number, line in enumerate(lines[:-1], start=1):
        row = json.loads(line)
        assert set(row) == {"id", "category", "instruction", "context", "response"}, number
        assert all(isinstance(value, str) for value in row.values()), number
        assert row["instruction"].strip() and row["response"].strip(), number
    license_text = (resources.files("sra_viz") / "corpus" / "LICENSE-corpus.txt").read_text(encoding="utf-8")
    assert "Apache License, Version 2.0" in license_text and "written for sra_viz" in license_text


def test_bundled_corpus_is_varied(corpus):
    texts = [ex.text for ex in corpus]
    scripts = {
        "cjk": r"[\u4e00-\u9fff]",
        "kana": r"[\u3040-\u30ff]",
        "cyrillic": r"[\u0400-\u04ff]",
        "devanagari": r"[\u0900-\u097f]",
        "arabic": r"[\u0600-\u06ff]",
        "emoji": r"[\U0001f300-\U0001faff]",
    }
    for script, pattern in scripts.items():
        assert sum(bool(re.search(pattern, t)) for t in texts) >= 3, script
    non_english = [ex for ex in corpus if ex.category == "multilingual"]
    assert 0.08 <= len(non_english) / len(corpus) <= 0.15
    assert sum("\n    " in ex.response for ex in corpus) >= 10  # indented code
    assert sum(bool(ex.prompt.count("Context:")) for ex in corpus) >= 40  # closed QA, summaries, rewrites
    for ex in corpus:  # short responses: a few sentences or a short snippet
        assert len(ex.response) <= 600, ex.id
        assert ex.response.count("\n") <= 14, ex.id


def test_prompt_end_marks_the_response(corpus):
    for ex in corpus:
        assert ex.text[ex.prompt_end :] == ex.response
        assert ex.text[: ex.prompt_end] == ex.prompt + RESPONSE_SEPARATOR
        assert ex.prompt.startswith("Instruction: ") and ex.prompt.endswith("Response:")
    bare = Example(prompt="", response="Just text.")
    assert bare.text == "Just text." and bare.prompt_end == 0


def test_corpus_is_cached_but_returned_as_a_fresh_list(corpus):
    again = load_bundled_corpus()
    again.pop()
    assert len(load_bundled_corpus()) == len(corpus)
    with pytest.raises(AttributeError):
        corpus[0].response = "changed"  # frozen: a caller cannot corrupt the cached corpus


def test_example_rejects_non_strings():
    with pytest.raises(SraVizError, match="Example.response must be a string"):
        Example(prompt="q", response=None)


def test_format_prompt():
    assert format_prompt("  Add 2 and 3. ") == "Instruction: Add 2 and 3.\nResponse:"
    assert (
        format_prompt("Summarise.", " Cats nap.\n")
        == "Instruction: Summarise.\nContext: Cats nap.\nResponse:"
    )


def test_to_frame(corpus):
    frame = to_frame(corpus[:5])
    assert frame.shape == (5, 6)
    assert frame["response_chars"].tolist() == [len(ex.response) for ex in corpus[:5]]


# ---------------------------------------------------------------- user files: round trips

ROWS = [  # awkward on purpose: delimiters, quotes, newlines, indentation, non-ASCII, emoji
    {"instruction": "Say hi, politely.", "context": "", "response": 'He said "hi", then left.'},
    {"instruction": "Summarise.", "context": "Line one;\nline two\twith a tab.", "response": "Two lines."},
    {"instruction": "Write code.", "context": "", "response": "def f(x):\n    return x * 2  # ×2 🙂"},
    {"instruction": "Traduis « chat ».", "context": "猫", "response": "Le mot « chat » désigne un 猫."},
]

SCHEMAS = {
    "dolly": (
        ["instruction", "context", "response"],
        lambda r: (r["instruction"], r["context"], r["response"]),
        lambda r: format_prompt(r["instruction"], r["context"]),
        lambda r: r["response"],
    ),
    "prompt": (
        ["prompt", "response"],
        lambda r: (r["instruction"] + " " + r["context"], r["response"]),
        lambda r: (r["instruction"] + " " + r["context"]).strip(),
        lambda r: r["response"],
    ),
    "text": (
        ["text"],
        lambda r: (r["instruction"] + "\n" + r["response"],),
        lambda r: "",
        lambda r: r["instruction"] + "\n" + r["response"],
    ),
}


def _write(fmt: str, columns: list[str], rows: list[tuple]) -> str:
    if fmt == "jsonl":
        return "".join(
            json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False) + "\n" for row in rows
        )
    if fmt == "json":
        return json.dumps(
            [dict(zip(columns, row, strict=True)) for row in rows], ensure_ascii=False, indent=2
        )
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv"])
def test_round_trip_each_format_and_schema(tmp_path, fmt, schema):
    columns, to_row, prompt_of, response_of = SCHEMAS[schema]
    content = _write(fmt, columns, [to_row(r) for r in ROWS])
    path = tmp_path / f"examples.{fmt}"
    path.write_text(content, encoding="utf-8")
    expected = [(prompt_of(r), response_of(r).strip()) for r in ROWS]
    loaded_from = {
        "path": load_examples(path),
        "str path": load_examples(str(path)),
        "bytes with fmt": load_examples(content.encode("utf-8"), fmt=fmt),
        "upload": load_examples(_upload(content.encode("utf-8"), path.name)),
    }
    if fmt != "tsv":  # a tab-separated file needs its name or fmt; the others are sniffed
        loaded_from["str content"] = load_examples(content)
    for how, examples in loaded_from.items():
        assert [(ex.prompt, ex.response) for ex in examples] == expected, how
        for ex in examples:
            assert ex.text[ex.prompt_end :] == ex.response


def test_ids_and_categories_are_kept_or_defaulted():
    content = (
        '{"id": "a1", "category": "qa", "prompt": "p", "response": "r"}\n'
        "\n"
        '{"id": 7, "prompt": "p2", "response": "r2"}\n'
        '{"prompt": "p3", "response": "r3"}\n'
    )
    examples = load_examples(content)
    assert [(ex.id, ex.category) for ex in examples] == [("a1", "qa"), ("7", ""), ("line-4", "")]


def test_alpaca_and_prompt_completion_spellings():
    alpaca = load_examples('[{"instruction": "Add.", "input": "2 and 3", "output": "5"}]')
    assert alpaca[0].prompt == format_prompt("Add.", "2 and 3") and alpaca[0].response == "5"
    completion = load_examples(
        '{"Prompt": "2+2=", "Completion": " 4"}\n'
    )  # column names are case-insensitive
    assert (completion[0].prompt, completion[0].response) == ("2+2=", "4")
    null_context = load_examples('{"instruction": "Hi?", "context": null, "response": "Hello."}')
    assert null_context[0].prompt == format_prompt("Hi?")


def test_csv_details():
    semicolon = load_examples(b"prompt;response\nWhat is 1,5 + 1,5?;3\n")
    assert (semicolon[0].prompt, semicolon[0].response) == ("What is 1,5 + 1,5?", "3")
    windows = load_examples("\ufefftext\r\nfirst\r\n\r\nsecond\r\n".encode())  # BOM, CRLF, a blank line
    assert [(ex.response, ex.id) for ex in windows] == [("first", "line-2"), ("second", "line-4")]
    extra = load_examples("Unnamed: 0,instruction,response,source\n0,Q?,A.,web\n")  # extra columns ignored
    assert extra[0].prompt == format_prompt("Q?")


def test_paths_are_accepted_as_pathlike(tmp_path):
    path = Path(tmp_path) / "data.ndjson"
    path.write_text('{"text": "one"}\n{"text": "two"}\n')
    assert [ex.response for ex in load_examples(path)] == ["one", "two"]


def test_line_separator_characters_inside_jsonl_strings_do_not_shift_lines():
    content = '{"text": "a\u2028b\u0085c"}\n{"text": ""}\n'
    with pytest.raises(SraVizError, match=r"line 2: empty text"):
        load_examples(content)
    assert load_examples(content.split("\n")[0])[0].response == "a\u2028b\u0085c"


# ---------------------------------------------------------------- upload-like objects


def _upload(data: bytes, name: str) -> io.BytesIO:
    """What Streamlit's UploadedFile looks like to a reader: a BytesIO with a file name."""
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


def test_upload_like_objects():
    upload = _upload(b"instruction,context,response\nName a colour.,,Blue.\n", "my data.csv")
    assert load_examples(upload)[0].response == "Blue."
    assert load_examples(upload)[0].response == "Blue."  # read again after a rerun: starts from the top
    text_mode = io.StringIO('{"prompt": "a", "response": "b"}\n')
    assert load_examples(text_mode)[0].response == "b"
    nameless = io.BytesIO(b'{"text": "plain"}\n')
    assert load_examples(nameless)[0].text == "plain"
    with pytest.raises(SraVizError, match=r"my data\.csv line 2: empty response"):
        load_examples(_upload(b"instruction,context,response\nName a colour.,,\n", "my data.csv"))


# ---------------------------------------------------------------- malformed input

MALFORMED = [
    (
        "invalid json",
        b'{"prompt": "a", "response": "b"}\n\n{"prompt": "a", "response": }\n',
        "line 3",
        "invalid JSON",
    ),
    (
        "not an object",
        b'{"prompt": "a", "response": "b"}\n["a", "b"]\n',
        "line 2",
        "expected a JSON object, found a list",
    ),
    ("missing field", b'{"instruction": "a", "context": ""}\n', "line 1", "missing field 'response'"),
    ("missing later", b'{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n', "line 2", "found prompt"),
    ("no known columns", b'{"question": "a", "answer": "b"}\n', "line 1", "found question, answer"),
    (
        "empty response",
        b'{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": "  "}\n',
        "line 2",
        "empty response",
    ),
    ("empty instruction", b'{"instruction": "", "response": "b"}\n', "line 1", "empty instruction"),
    ("empty text", b'{"text": "ok"}\n{"text": "ok"}\n{"text": ""}\n', "line 3", "empty text"),
    (
        "number value",
        b'{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": 42}\n',
        "line 2",
        "is a number (42)",
    ),
    ("list value", b'{"instruction": ["a"], "response": "b"}\n', "line 1", "'instruction' is a list"),
    ("bad category", b'{"text": "a", "category": {"x": 1}}\n', "line 1", "'category' is an object"),
    ("csv missing column", b"instruction,context\nq,c\n", "line 1 (header)", "missing column 'response'"),
    ("csv no known columns", b"question,answer\nq,a\n", "line 1 (header)", "found question, answer"),
    (
        "csv field count",
        b"prompt,response\na,b\na,b,c\n",
        "line 3",
        "expected 2 fields (prompt, response), found 3",
    ),
    ("csv multiline rows", b'prompt,response\n"a\nb\nc",d\n"e",""\n', "line 5", "empty response"),
    ("csv bad quotes", b'prompt,response\na,b\n"c"d,e\n', "line 3", "malformed CSV"),
    ("bad utf-8", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "line 2", "not valid UTF-8"),
]


@pytest.mark.parametrize(("case", "content", "where", "what"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_names_the_line(tmp_path, case, content, where, what):
    suffix = ".csv" if case.startswith("csv") else ".jsonl"
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    for source in (path, _upload(content, path.name)):
        with pytest.raises(SraVizError) as info:
            load_examples(source)
        message = str(info.value)
        assert f"bad{suffix} {where}" in message and what in message, message


def test_missing_fields_message_lists_expected_and_found_columns():
    with pytest.raises(SraVizError) as info:
        load_examples('{"instruction": "a", "context": ""}\n')
    message = str(info.value)
    assert "expected columns instruction, response and optional context" in message
    assert "found instruction, context" in message
    with pytest.raises(SraVizError, match="instruction/context/response .* prompt/response or text"):
        load_examples('{"question": "a"}\n')


@pytest.mark.parametrize("content", [b"", b"  \n\n \t\n", "\ufeff", "\n"])
def test_empty_input(tmp_path, content):
    with pytest.raises(SraVizError, match="is empty"):
        load_examples(content.encode() if isinstance(content, str) else content, fmt="jsonl")
    path = tmp_path / "empty.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(SraVizError, match="empty.csv is empty"):
        load_examples(path)


def test_header_only_csv_has_no_examples():
    with pytest.raises(SraVizError, match="has no examples"):
        load_examples(b"prompt,response\n", fmt="csv")


def test_size_cap(tmp_path):
    content = ('{"text": "' + "x" * 200 + '"}\n') * 10  # 2,120 bytes
    path = tmp_path / "big.jsonl"
    path.write_text(content)
    for source in (path, str(path), content, content.encode(), _upload(content.encode(), "big.jsonl")):
        with pytest.raises(
            SraVizError, match=r"is larger than the max_bytes limit of 1,000 bytes.*pass a larger max_bytes"
        ):
            load_examples(source, max_bytes=1000)
        assert len(load_examples(source, max_bytes=len(content))) == 10


def test_bad_arguments(tmp_path):
    with pytest.raises(SraVizError, match="file not found"):
        load_examples(tmp_path / "missing.jsonl")
    with pytest.raises(SraVizError, match="file not found"):
        load_examples(str(tmp_path / "missing.csv"))
    with pytest.raises(SraVizError, match="file not found: missing.txt"):  # a bare name, not a one-line CSV
        load_examples("missing.txt")
    with pytest.raises(SraVizError, match="holds no .parquet, .jsonl, .json or .csv file"):
        load_examples(tmp_path)  # a folder is read through datasets (tests/test_dataset_files.py)
    with pytest.raises(SraVizError, match="unknown format 'xml'"):
        load_examples('{"text": "a"}', fmt="xml")
    with pytest.raises(SraVizError, match="cannot read examples from a int"):
        load_examples(42)
    with pytest.raises(SraVizError, match="expected a JSON list of objects"):
        load_examples('"just a string"', fmt="json")


# ---------------------------------------------------------------- split and batches


def test_split_is_deterministic_disjoint_and_complete(corpus):
    train, probe, heldout = split_examples(corpus, n_probe=24, n_heldout=40, seed=3)
    assert (len(train), len(probe), len(heldout)) == (len(corpus) - 64, 24, 40)
    ids = [{ex.id for ex in part} for part in (train, probe, heldout)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == {ex.id for ex in corpus}
    assert split_examples(corpus, 24, 40, seed=3) == (train, probe, heldout)
    assert split_examples(corpus, 24, 40, seed=4)[1] != probe
    position = {ex.id: i for i, ex in enumerate(corpus)}
    for part in (train, probe, heldout):  # each part keeps the corpus order
        assert [position[ex.id] for ex in part] == sorted(position[ex.id] for ex in part)
    assert split_examples(corpus, 5, 40, seed=3)[2] == heldout  # held-out set ignores n_probe


def test_split_refuses_impossible_sizes(corpus):
    with pytest.raises(SraVizError, match="leave at least one for training"):
        split_examples(corpus[:10], n_probe=5, n_heldout=5, seed=0)
    with pytest.raises(SraVizError, match=">= 0"):
        split_examples(corpus, n_probe=-1, n_heldout=5)


def test_batches_are_deterministic_shuffled_epochs(corpus):
    examples = corpus[:50]
    epoch0 = list(batches(examples, batch_size=8, seed=1, epoch=0))
    assert [len(b) for b in epoch0] == [8] * 6 + [2]
    assert epoch0 == list(batches(examples, batch_size=8, seed=1, epoch=0))
    flat = [ex.id for batch in epoch0 for ex in batch]
    assert sorted(flat) == sorted(ex.id for ex in examples) and len(set(flat)) == 50
    assert flat != [ex.id for ex in examples]  # shuffled
    epoch1 = [ex.id for batch in batches(examples, 8, seed=1, epoch=1) for ex in batch]
    other_seed = [ex.id for batch in batches(examples, 8, seed=2, epoch=0) for ex in batch]
    assert epoch1 != flat and other_seed != flat and sorted(epoch1) == sorted(flat)
    dropped = list(batches(examples, batch_size=8, seed=1, epoch=0, drop_last=True))
    assert dropped == epoch0[:-1]


def test_batches_refuse_bad_arguments(corpus):
    with pytest.raises(SraVizError, match="batch_size must be >= 1"):
        batches(corpus, batch_size=0)
    with pytest.raises(SraVizError, match="no examples"):
        batches([], batch_size=4)


# ---------------------------------------------------------------- samples


def test_samples_cover_the_tokenizer_traps():
    assert set(SAMPLES) == {
        "Prose",
        "Code",
        "Numbers",
        "Emoji",
        "CJK",
        "Odd whitespace",
        "Mixed scripts",
        "Special-token strings",
    }
    for name, text in SAMPLES.items():
        assert text.strip() and len(text) < 600, name
    for char in ("\t", "\u00a0", "\u3000", "\u200b", "\r\n", "    "):
        assert char in SAMPLES["Odd whitespace"], repr(char)
    for literal in ("<bos>", "<|im_end|>", "<|endoftext|>"):
        assert literal in SAMPLES["Special-token strings"]
    assert "\u200d" in SAMPLES["Emoji"] and "\U0001f1ef\U0001f1f5" in SAMPLES["Emoji"]  # ZWJ family, flag
    assert re.search(r"[\u0e00-\u0e7f]", SAMPLES["Mixed scripts"])  # Thai
    assert re.search(r"[\u0900-\u097f]", SAMPLES["Mixed scripts"])  # Devanagari
    assert re.search(r"[\u0600-\u06ff]", SAMPLES["Mixed scripts"])  # Arabic
    assert re.search(r"[\u0300-\u036f]", SAMPLES["Mixed scripts"])  # combining marks
    assert "\n    " in SAMPLES["Code"]
    assert re.search(r"[\u4e00-\u9fff]", SAMPLES["CJK"]) and re.search(r"[\u3040-\u30ff]", SAMPLES["CJK"])


def test_probe_texts():
    assert len(GEOMETRY_TEXTS) == 24 and len(set(GEOMETRY_TEXTS)) == 24
    assert all(10 <= len(text) <= 300 for text in GEOMETRY_TEXTS)
    assert sum(not text.isascii() for text in GEOMETRY_TEXTS) >= 5


# ---------------------------------------------------------------- real tokenizers


@pytest.mark.slow
def test_response_start_is_a_token_boundary_for_both_default_tokenizers(
    corpus, teacher_tokenizer, student_tokenizer
):
    """No teacher or student token straddles prompt_end, so response-only alignment starts cleanly."""
    for tokenizer in (teacher_tokenizer, student_tokenizer):
        for ex in corpus:
            offsets = tokenizer(ex.text, return_offsets_mapping=True)["offset_mapping"]
            straddling = [(s, e) for s, e in offsets if s < ex.prompt_end < e]
            assert not straddling, (ex.id, straddling)
