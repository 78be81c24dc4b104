"""Save a tokenizer folder that transformers loads without parsing ``tokenizer.json`` in Python twice.

transformers 5 writes a tokenizer's added tokens only into ``tokenizer.json``. Loading such a folder,
it then reads them back through a legacy path that parses the whole ``tokenizer.json`` with Python's
``json`` once more (33 MB for Gemma 3: about 1 s of the 3 s a load takes, paid by every CLI command,
notebook kernel, app server and worker process). When ``tokenizer_config.json`` lists them as
``added_tokens_decoder``, as tokenizer folders on the hub do, that pass is skipped and the tokenizer
loaded is the same (tests/test_models.py compares the two loads' backends and settings).

    save_tokenizer(tokenizer, folder)      # save_pretrained + the added tokens in the config
    record_added_tokens(folder)            # the same for a folder saved earlier (idempotent)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def save_tokenizer(tokenizer: Any, folder: str | os.PathLike) -> None:
    """``tokenizer.save_pretrained(folder)``, then `record_added_tokens` on it."""
    tokenizer.save_pretrained(str(folder))
    record_added_tokens(folder)


def record_added_tokens(folder: str | os.PathLike) -> bool:
    """Copy ``tokenizer.json``'s ``added_tokens`` into ``tokenizer_config.json`` as ``added_tokens_decoder``.

    Does nothing (returns False) when the config already has them or either file is missing or not
    a JSON object; the config is replaced atomically, so a reader sees the old file or the new one.

    Example:
        >>> record_added_tokens("~/.cache/sra_viz/models/gemma3-270m")   # doctest: +SKIP
        True
    """
    folder = Path(folder).expanduser()
    config_path, tokenizer_path = folder / "tokenizer_config.json", folder / "tokenizer.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "added_tokens_decoder" in config:
            return False
        added = json.loads(tokenizer_path.read_text(encoding="utf-8")).get("added_tokens") or []
        # {"<id>": {"content": ..., "lstrip": ..., "normalized": ..., "rstrip": ..., "special": ...}}
        decoder = {str(token["id"]): {k: v for k, v in token.items() if k != "id"} for token in added}
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return False
    config["added_tokens_decoder"] = decoder
    staged = config_path.with_name(f".{config_path.name}.{os.getpid()}.tmp")
    staged.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(staged, config_path)
    return True
