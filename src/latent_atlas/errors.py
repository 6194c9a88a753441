"""Errors as one clean line: what a failed job prints on the terminal (its log file keeps the traceback).

Libraries' messages reach users inside ours (torch, onnxruntime, PIL, ...); some carry terminal
control codes (torch's weights-only refusal is bold) or run over many lines. Everything the project
shows of them goes through `clean`.
"""

from __future__ import annotations

import re
from typing import Iterable

# ANSI CSI sequences (colours, cursor moves), OSC sequences (titles, links), other ESC sequences, and
# C0 / C1 controls except tab and newline.
_CONTROL = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?"
                      r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """`text` without terminal control codes; tabs and newlines are kept."""
    return _CONTROL.sub("", text)


def one_line(text: str) -> str:
    """`text` cleaned, with every run of whitespace (newlines, tabs) as one space."""
    return " ".join(clean(text).split())


def _typed(err: BaseException, message: str) -> str:
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def summary(err: BaseException) -> str:
    """`Type: message` of a library's error for a message of ours: its first paragraph on one line
    (libraries append advice and internals after a blank line)."""
    return _typed(err, one_line(clean(str(err)).strip().split("\n\n")[0]))


def failure(rule: str, wildcards: Iterable[tuple[str, object]], err: BaseException) -> str:
    """The one line a failed job ends with: `rule r (w=v, ...) failed: Type: message`.

    The whole message is kept (ours name the config key and the file); only its lines are joined.
    """
    where = ", ".join(f"{k}={v}" for k, v in wildcards)
    return f"rule {rule}{f' ({where})' if where else ''} failed: {_typed(err, one_line(str(err)))}"
