"""Shared models and per-session state for the Streamlit pages.

Models are loaded once per process with ``st.cache_resource`` and shared by every browser session,
so nothing here may mutate them: pages only run forward passes, and the distillation engine trains
its own deep copy of the student. Everything a page computes is kept in ``st.session_state`` so a
rerun (a widget change, a page switch) never loses it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from sra_viz.errors import SraVizError
from sra_viz.fetch import DEFAULT_MODELS, DEFAULT_STUDENT, DEFAULT_TEACHER, ensure_default_model
from sra_viz.models import LoadedModel, ModelPair, load_model, load_tokenizer
from sra_viz.samples import SAMPLES
from sra_viz.ui.worker import release_memory

TEACHER_KEY = "teacher_spec"
STUDENT_KEY = "student_spec"
MAX_TEXT_CHARS = 4000  # a page of text: enough to read, small enough for a 2-core forward pass

# Models in the resource cache, by resolved identity (see model_identity) -> the spec first used to
# load them, so pages can say what is loaded and the tokenizer of a loaded model is reused.
_loaded: dict[str, str] = {}
_loaded_lock = threading.Lock()
MEMORY_BOUND_ENV = "SRA_VIZ_MEMORY_BOUND_GB"


def model_identity(spec: str) -> str:
    """What ``spec`` loads, as one string: a default name's folder, a path made absolute, or a hub id.

    The same model named by its default name and by its folder path is one identity, so one copy.
    Example:
        >>> model_identity("./models/../models/tiny") == model_identity("models/tiny")  # doctest: +SKIP
        True
    """
    spec = str(spec).strip()
    if spec in DEFAULT_MODELS:
        return str(ensure_default_model(spec).resolve())
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


@st.cache_resource(show_spinner=False)  # no eviction: "Release memory" and the memory bound free models
def _cached_model(identity: str, _spec: str) -> LoadedModel:
    model = load_model(_spec)
    with _loaded_lock:
        _loaded[identity] = _spec
    return model


def get_model(spec: str) -> LoadedModel:
    """The model of ``spec``, loaded once per process and shared by all sessions (read-only).

    Example:
        >>> get_model("smollm2-135m").info.layers  # doctest: +SKIP
        30
    """
    spec = str(spec).strip()
    if not spec:
        raise SraVizError(
            "model spec is empty: give a default name, a folder, a .gguf file or a Hugging Face id"
        )
    return _cached_model(model_identity(spec), spec)


def release_model(spec: str) -> bool:
    """Drop ``spec``'s model from the shared cache (its memory is freed once no session holds it).

    Example:
        >>> release_model("smollm2-135m")  # doctest: +SKIP
        True
    """
    identity = model_identity(spec)
    with _loaded_lock:
        first_spec = _loaded.pop(identity, None)
    if first_spec is not None:
        _cached_model.clear(identity, first_spec)
    return first_spec is not None


def loaded_specs() -> list[str]:
    """Specs of the models in the shared cache now (one per model, as first loaded)."""
    with _loaded_lock:
        return sorted(_loaded.values())


def is_loaded(spec: str) -> bool:
    """True when ``spec``'s model (by identity) is in the shared cache."""
    with _loaded_lock:
        return model_identity(spec) in _loaded


def process_memory() -> int:
    """Resident memory (RSS) of this server process, in bytes (``/proc``; elsewhere the peak RSS).

    Example:
        >>> process_memory() > 0
        True
    """
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return int(peak if sys.platform == "darwin" else peak * 1024)


def memory_bound() -> int:
    """The server's memory bound in bytes: ``$SRA_VIZ_MEMORY_BOUND_GB``, else 75% of the machine's RAM."""
    value = os.environ.get(MEMORY_BOUND_ENV, "").strip()
    if value:
        try:
            return int(float(value) * 2**30)
        except ValueError:
            raise SraVizError(f"{MEMORY_BOUND_ENV}={value!r} is not a number of GB (e.g. 8)") from None
    return int(0.75 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def memory_readout() -> str:
    """One line for the pages: the server's resident memory against its bound.

    Example:
        >>> memory_readout()  # doctest: +SKIP
        'server memory 1.9 GB of a 17.6 GB bound'
    """
    return f"server memory {process_memory() / 2**30:.1f} GB of a {memory_bound() / 2**30:.1f} GB bound"


def check_memory(keep: tuple[str, ...] = ()) -> None:
    """Release cached models not in ``keep`` while the process is over its bound (before a new run).

    Raises SraVizError when the process is still over the bound with only ``keep`` loaded.
    Example:
        >>> check_memory(selected_specs())  # doctest: +SKIP
    """
    bound = memory_bound()
    if process_memory() > bound:
        kept = {model_identity(s) for s in keep}
        with _loaded_lock:
            others = [spec for identity, spec in _loaded.items() if identity not in kept]
        for spec in others:
            release_model(spec)
        release_memory()
    used = process_memory()
    if used > bound:
        raise SraVizError(
            f"server memory {used / 2**30:.1f} GB is over its bound of {bound / 2**30:.1f} GB "
            f"({MEMORY_BOUND_ENV}); stop running runs, release models on the Models page or restart the app"
        )


def selected_specs() -> tuple[str, str]:
    """(teacher spec, student spec) chosen in this session; until changed, the server's pair:
    ``$SRA_VIZ_TEACHER`` / ``$SRA_VIZ_STUDENT`` where set, else the default pair."""
    st.session_state.setdefault(TEACHER_KEY, os.environ.get("SRA_VIZ_TEACHER") or DEFAULT_TEACHER)
    st.session_state.setdefault(STUDENT_KEY, os.environ.get("SRA_VIZ_STUDENT") or DEFAULT_STUDENT)
    return st.session_state[TEACHER_KEY], st.session_state[STUDENT_KEY]


def get_pair() -> ModelPair:
    """The selected teacher and student, loaded (with a spinner) and shared read-only.

    Example:
        >>> pair = get_pair()  # doctest: +SKIP
    """
    teacher, student = selected_specs()
    with st.spinner(f"Loading teacher {teacher} and student {student} (about 10 s the first time)…"):
        return ModelPair(teacher=get_model(teacher), student=get_model(student))


def get_tokenizers() -> tuple[Any, Any]:
    """(teacher tokenizer, student tokenizer) of the selected pair, without loading weights.

    A model already in the cache lends its tokenizer; otherwise only the tokenizer is loaded.
    """
    specs = selected_specs()
    with st.spinner("Loading tokenizers…"):
        return tuple(get_model(s).tokenizer if is_loaded(s) else load_tokenizer(s) for s in specs)


def check_text(text: str | None, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``text`` when it is usable, else a ``SraVizError`` that says what to change.

    Example:
        >>> check_text("Hello")
        'Hello'
    """
    if text is None or not text.strip():
        raise SraVizError("text is empty: paste or pick a text with at least one non-space character")
    if len(text) > max_chars:
        raise SraVizError(f"text has {len(text):,} characters, over the limit of {max_chars:,}: shorten it")
    return text


KEPT = "_kept_widget_keys"


def keep(key: str, default: Any, options: Any = None) -> Any:
    """Seed a widget's value and keep it across page switches; call just before drawing ``key=key``.

    Streamlit forgets the state of widgets that a run does not draw; :func:`carry_over` (called by
    the router on every run) writes kept values back as session state so they survive other pages.
    A kept value no longer in ``options`` is reset. Draw the widget without ``value=``/``index=``.

    Example:
        >>> keep("saliency_k", 15)  # doctest: +SKIP
        15
    """
    value = st.session_state.get(key, default)
    if options is not None and value not in list(options):
        value = default
    st.session_state[key] = value
    st.session_state.setdefault(KEPT, set()).add(key)
    return value


def carry_over() -> None:
    """Re-assert every kept widget value for this run (the router calls it before the page runs)."""
    for key in st.session_state.get(KEPT, ()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def results(page: str) -> dict[str, Any]:
    """This session's stored results of one page (a dict that survives reruns)."""
    store = st.session_state.setdefault("_results", {})
    return store.setdefault(page, {})


@contextmanager
def reported(what: str = "") -> Iterator[None]:
    """Show any error raised inside as ``st.error`` (never a traceback).

    Streamlit's own control flow (``st.rerun``, ``st.stop``) raises ``BaseException``s and passes.

    Example:
        >>> with reported("alignment"):  # doctest: +SKIP
        ...     raise SraVizError("text is empty")
    """
    try:
        yield
    except SraVizError as exc:
        st.error(str(exc), icon=":material/error:")
    except Exception as exc:  # an unexpected failure still gets a readable message, not a traceback
        prefix = f"{what} failed" if what else "failed"
        st.error(f"{prefix}: {type(exc).__name__}: {exc}", icon=":material/error:")


# ----------------------------------------------------------------------------- the shared text

TEXT_KEY = "shared_text"
SAMPLE_KEY = "shared_sample"


def _use_sample() -> None:
    name = st.session_state.get(SAMPLE_KEY)
    if name in SAMPLES:
        st.session_state[TEXT_KEY] = SAMPLES[name]


def text_picker(label: str = "Text", height: int = 120) -> str:
    """A sample chooser and the text area shared by every text page (one text per session).

    Picking a sample copies it into the text area; whatever is typed there is the current text.
    """
    names = list(SAMPLES)
    keep(TEXT_KEY, SAMPLES[names[0]])
    st.selectbox(
        "Start from a sample",
        names,
        index=None,
        key=SAMPLE_KEY,
        on_change=_use_sample,
        placeholder="pick a sample text…",
    )
    return st.text_area(
        label,
        key=TEXT_KEY,
        height=height,
        help=f"Up to {MAX_TEXT_CHARS:,} characters. Press Ctrl+Enter (or click outside) to apply.",
    )


def current_text() -> str:
    """The session's current text (the first sample until the user changes it)."""
    return st.session_state.get(TEXT_KEY) or SAMPLES[next(iter(SAMPLES))]
