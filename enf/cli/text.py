"""Text of the command line: help from docstrings, one-line errors."""

from __future__ import annotations

import re

__all__ = ["plain_text", "short_error"]


def plain_text(doc: str) -> str:
    """A docstring as terminal help: reStructuredText literals (````x````), roles (``:class:`~enf.X```) and
    emphasis (``**x**``) become plain text."""
    doc = re.sub(r":(?:class|func|meth|mod|attr|data|obj|exc):`~?(?:[\w.]+\.)?(\w+)`", r"\1", doc)
    doc = re.sub(r"``(.+?)``", r"\1", doc, flags=re.S)
    return re.sub(r"\*\*(.+?)\*\*", r"\1", doc, flags=re.S)


def short_error(message: str) -> str:
    """The cause of a jsonargparse instantiation error, without its dump of Union subtypes and values."""
    if "Does not validate against any of the Union subtypes" not in message:
        return message
    causes = [
        line.strip()[2:]
        for line in message.splitlines()
        if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line
    ]
    return "; ".join(causes) or message
