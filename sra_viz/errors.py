"""The one error type of sra_viz: every message says what was given and what to do instead."""


class SraVizError(ValueError):
    """A user-facing error: bad input, a missing model, a model that cannot do what was asked.

    Example:
        >>> raise SraVizError("text is empty: give at least one non-space character")
        Traceback (most recent call last):
        ...
        sra_viz.errors.SraVizError: text is empty: give at least one non-space character
    """
