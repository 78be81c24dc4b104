"""Shared fixtures: the real default pair and real tokenizers, loaded once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def default_pair():
    """Gemma-3-270M teacher + SmolLM2-135M student on CPU, fp32, eager attention."""
    import torch

    from sra_viz.models import load_pair

    torch.manual_seed(0)
    return load_pair(device="cpu")


@pytest.fixture(scope="session")
def teacher_tokenizer():
    from sra_viz.models import load_tokenizer

    return load_tokenizer("gemma3-270m")


@pytest.fixture(scope="session")
def student_tokenizer():
    from sra_viz.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from sra_viz.fetch import ensure_gpt2_tokenizer
    from sra_viz.models import load_tokenizer

    return load_tokenizer(ensure_gpt2_tokenizer())


@pytest.fixture(scope="session")
def wordpiece_tokenizer():
    from tests._wordpiece import build_wordpiece_tokenizer

    return build_wordpiece_tokenizer()
