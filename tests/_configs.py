"""The small distillation settings the engine tests share, written once; each test names what it changes.

``small_config(out, *presets, pair_dirs=None, **over)`` is `SMALL_RUN`, then each preset, then ``over``:

    >>> small_config(tmp_path / "run", steps=4)  # doctest: +SKIP
    >>> small_config(out, HELDOUT_RUN, pair_dirs=tiny_pair_dirs, method="ce")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from sra_viz.distill import DistillConfig

# two steps of 2 texts of 32 tokens, a 2-block truncated student, probed and snapshotted every step, a
# checkpoint only at the end, no warm-up, and the held-out evaluation kept short (its own tests:
# test_evaluation.py)
SMALL_RUN: dict = dict(
    steps=2,
    batch_size=2,
    max_length=32,
    student_variant="truncated",
    student_k=2,
    probe_size=3,
    heldout_size=2,
    log_every=1,
    snapshot_every=1,
    checkpoint_every=0,
    warmup_steps=0,
    eval_size=2,
    eval_max_new_tokens=4,
)

# one step of the whole student, one held-out text, no snapshot: the layer plan's and MinED's sessions
ONE_STEP_FULL: dict = dict(steps=1, heldout_size=1, snapshot_every=100, student_variant="full")

# the runs the held-out views read: a 1-block student probed at step 0 and at the end, with warm-up
HELDOUT_RUN: dict = dict(student_k=1, probe_size=2, log_every=10, snapshot_every=10, warmup_steps=3)


def small_config(
    out: Path | str | None, *presets: dict, pair_dirs: tuple[Path, Path] | None = None, **over
) -> DistillConfig:
    """`SMALL_RUN` updated by ``presets`` then ``over``, written to ``out`` (None: a new folder under the
    cache's runs). ``pair_dirs`` (the tiny pair's folders) become the teacher and student specs; without
    them the config names the default pair and the test hands its session the pair it runs on."""
    fields: dict = dict(SMALL_RUN)
    for preset in presets:
        fields.update(preset)
    if pair_dirs is not None:
        fields.update(teacher=str(pair_dirs[0]), student=str(pair_dirs[1]))
    fields["out"] = None if out is None else str(out)
    fields.update(over)
    return DistillConfig(**fields)
