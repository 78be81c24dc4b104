"""Views shared by URL: each text page names the widget values its query string carries, and a link
opened later (or elsewhere) restores them.

A page declares a tuple of :class:`Param` (URL name -> session-state key of its widget, how the value is
written and read, which values are allowed). :func:`restore` runs before the page draws its widgets and
copies the URL's values into session state; :func:`publish` runs after them, writes the current values
back into the URL (so the address bar always shows the view) and draws the link in a copy box.
Decoding and encoding are pure functions (:func:`decode`, :func:`encode`, :func:`link`) that tests call
directly. A bad URL value is reported in one line and the page keeps its own value.

Example:
    >>> params = (Param("text", "shared_text"), Param("word", "align_word", kind="bool"))
    >>> encode({"shared_text": "Hi 東京", "align_word": True}, params)
    {'text': 'Hi 東京', 'word': '1'}
    >>> decode({"word": "0", "text": "Hi"}, params)
    ({'align_word': False, 'shared_text': 'Hi'}, [])
    >>> link("http://localhost:8501/", "alignment", {"text": "a b&c"})
    'http://localhost:8501/alignment?text=a%20b%26c'
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import streamlit as st

from sra_viz.errors import SraVizError
from sra_viz.ui.state import STUDENT_KEY, TEACHER_KEY

TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
PUBLISHED = "_share_published"  # session key: page -> the query string this session last wrote


@dataclass(frozen=True)
class Param:
    """One widget value in a page's URL.

    ``kind``: "str", "int" or "bool" (written 1/0). ``choices``: the allowed values (a ``range`` for
    sliders), checked on restore. ``words``: URL words for special values (e.g. ``{"all": "all heads"}``).
    ``when``: written only when it holds for the session state (e.g. pasted texts only for that source).
    """

    name: str
    key: str
    kind: str = "str"
    choices: Collection[Any] | None = None
    words: Mapping[str, Any] = field(default_factory=dict)
    when: Callable[[Mapping[str, Any]], bool] | None = None

    def to_url(self, value: Any) -> str:
        for word, special in self.words.items():
            if value == special:
                return word
        if self.kind == "bool":
            return "1" if value else "0"
        return str(value)

    def from_url(self, raw: str) -> Any:
        """The session value of URL text ``raw``; SraVizError saying what was given and what is allowed."""
        if raw in self.words:
            return self.words[raw]
        if self.kind == "bool":
            if raw.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise SraVizError(f"link parameter {self.name}={raw!r} is not yes/no: use 1 or 0")
            value: Any = raw.lower() in TRUE_WORDS
        elif self.kind == "int":
            try:
                value = int(raw)
            except ValueError:
                raise SraVizError(
                    f"link parameter {self.name}={raw!r} is not a whole number{self._allowed()}"
                ) from None
        else:
            value = raw
        if self.choices is not None and value not in self.choices:
            raise SraVizError(f"link parameter {self.name}={raw!r} is not allowed{self._allowed()}")
        return value

    def _allowed(self) -> str:
        options = [*self.words]
        if isinstance(self.choices, range):
            options.append(f"{self.choices.start} to {self.choices.stop - 1}")
        elif self.choices is not None:
            options += [self.to_url(c) for c in self.choices]
        return f": use one of {', '.join(options)}" if options else ""


PAIR = (Param("teacher", TEACHER_KEY), Param("student", STUDENT_KEY))  # the selected model specs


def encode(values: Mapping[str, Any], params: tuple[Param, ...]) -> dict[str, str]:
    """The query parameters of the values in ``values`` (session state), in the order of ``params``."""
    return {
        p.name: p.to_url(values[p.key])
        for p in params
        if p.key in values and values[p.key] is not None and (p.when is None or p.when(values))
    }


def decode(query: Mapping[str, str], params: tuple[Param, ...]) -> tuple[dict[str, Any], list[str]]:
    """(session key -> value, one message per bad or unknown parameter) of a page's query parameters."""
    by_name = {p.name: p for p in params}
    values: dict[str, Any] = {}
    problems = []
    for name, raw in query.items():
        if name not in by_name:
            problems.append(
                f"link parameter {name!r} is not known on this page: it takes {', '.join(by_name)}"
            )
            continue
        try:
            values[by_name[name].key] = by_name[name].from_url(raw)
        except SraVizError as exc:
            problems.append(f"{exc}; the page keeps its own value")
    return values, problems


def link(base_url: str | None, page: str, query: Mapping[str, str]) -> str:
    """The full link of a page's view (path only when the app's address is unknown).

    ``base_url`` is the app's address, with or without the page's own path (``st.context.url`` gives
    the page's address in a browser).
        >>> link("http://host:8501/alignment", "alignment", {"word": "1"})
        'http://host:8501/alignment?word=1'
    """
    root = (base_url or "").rstrip("/")
    root = root.removesuffix(f"/{page}")
    return f"{root}/{page}?{urlencode(query, quote_via=quote)}"


def restore(page: str, params: tuple[Param, ...]) -> None:
    """Copy the URL's values into session state (before the page draws its widgets).

    Only a query string this session did not write itself is applied (a link just opened), so the
    user's later edits are never overwritten by the URL they produced. Bad values: one error line each.
    """
    query = {name: st.query_params[name] for name in st.query_params}
    if not query or query == st.session_state.get(PUBLISHED, {}).get(page):
        return
    values, problems = decode(query, params)
    for key, value in values.items():
        st.session_state[key] = value
    for problem in problems:
        st.error(problem, icon=":material/link_off:")
    st.session_state.setdefault(PUBLISHED, {})[page] = query


def publish(page: str, params: tuple[Param, ...]) -> str:
    """Write the view's values into the URL and draw its link in a copy box; returns the link."""
    query = encode({p.key: st.session_state[p.key] for p in params if p.key in st.session_state}, params)
    st.session_state.setdefault(PUBLISHED, {})[page] = query
    if {name: st.query_params[name] for name in st.query_params} != query:
        st.query_params.from_dict(query)
    url = link(st.context.url, page, query)
    with st.expander("Share this view", icon=":material/link:"):
        st.caption("This link opens the page with the same text and options (copy it with the button).")
        st.code(url, language=None, wrap_lines=True)
    return url
