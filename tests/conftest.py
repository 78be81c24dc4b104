"""Shared fixtures: the real default pair and real tokenizers, loaded once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two test workers (pytest-xdist): one intra-op torch thread for each and for the
    # processes it starts, since the workers already share the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# the modules with the longest tests, longest first (measured: `make test` prints the slowest tests)
LONGEST_FIRST = ("test_browser.py", "test_notebooks.py", "test_distill.py", "test_figures.py", "test_app.py")


@pytest.hookimpl(trylast=True)  # after xdist's own hook, which this one completes
def pytest_collection_modifyitems(config, items):
    """Modules with the longest tests run first, so that the test workers (`make test`: two) do not end
    on one long test while the other waits; a stable sort keeps a module's tests together, in order.

    Under ``--dist loadgroup`` the tests marked ``xdist_group(name)`` run on one worker, as xdist
    documents: xdist 3.8 tags them by appending ``@name`` to ``item._nodeid``, which pytest 9 no longer
    reads (it keeps the node id in ``item._id``), so the tag is written there too. The browser tests of
    one app server then share that server (tests/test_browser.py)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    if not getattr(config.option, "loadgroup", False):  # set by xdist in its workers under loadgroup
        return
    from _pytest.nodeid import NodeId

    for item in items:
        marks = item.iter_markers("xdist_group")
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks})
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.fixture(scope="session", autouse=True)
def teacher_cache_folder(tmp_path_factory):
    """Sessions of the tests (and the processes they start) keep their teacher cache in a temporary
    folder, never in the user's (sra_viz.paths.teacher_cache_dir reads $SRA_VIZ_TEACHER_CACHE)."""
    folder = tmp_path_factory.mktemp("teacher_cache")
    before = os.environ.get("SRA_VIZ_TEACHER_CACHE")
    os.environ["SRA_VIZ_TEACHER_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("SRA_VIZ_TEACHER_CACHE", None)
    else:
        os.environ["SRA_VIZ_TEACHER_CACHE"] = before


@pytest.fixture(scope="session", autouse=True)
def trackio_folder(tmp_path_factory):
    """trackio's records of the tests' ``report_to="trackio"`` runs go to a temporary folder, never the
    user's (trackio reads $TRACKIO_DIR once, when sra_viz.distill.tracking first imports it)."""
    folder = tmp_path_factory.mktemp("trackio")
    before = os.environ.get("TRACKIO_DIR")
    os.environ["TRACKIO_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("TRACKIO_DIR", None)
    else:
        os.environ["TRACKIO_DIR"] = before


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


@pytest.fixture(scope="session")
def tiny_pair_dirs(tmp_path_factory):
    """Folders of a 2-block Gemma 3 teacher and a 2-block Llama student with the real default tokenizers
    and random seeded weights (tests/_tiny.py): for engine tests that need no real weights."""
    from tests._tiny import build_tiny_pair

    return build_tiny_pair(tmp_path_factory.mktemp("tiny_pair"))


@pytest.fixture(scope="session")
def tiny_pair(tiny_pair_dirs):
    """The tiny seeded pair loaded like any other (``load_pair`` on its folders), CPU, fp32."""
    from sra_viz.models import load_pair

    teacher_dir, student_dir = tiny_pair_dirs
    return load_pair(str(teacher_dir), str(student_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_sra_run(tiny_pair, tiny_pair_dirs, tmp_path_factory):
    """A finished 2-step SRA run of the tiny pair (1-block truncated student, held-out evaluation of 2
    examples at step 0 and step 2, checkpoint at the end) and its session: (run folder, session). Read
    only: a test that changes a run, or needs it beside others in a folder, copies it first."""
    from sra_viz.distill import DistillSession
    from tests._configs import HELDOUT_RUN, small_config

    out = tmp_path_factory.mktemp("tiny_sra_run") / "sra-run"
    session = DistillSession(small_config(out, HELDOUT_RUN, pair_dirs=tiny_pair_dirs), pair=tiny_pair)
    assert session.run() == "finished"
    return out, session
