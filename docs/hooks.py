"""MkDocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``).

* The repository's figures reach the site through the symbolic links ``docs/figures`` and
  ``docs/experiments/results``, so the same relative links work on the site and in the repository.
* ``<!-- cli-reference -->`` in a page becomes the help text of every ``enf`` subcommand, generated from the
  parsers themselves (so the reference cannot drift from the code).
* Sphinx roles in docstrings (``:class:`~enf.X` ``) render as plain code names.
"""

from __future__ import annotations

import contextlib
import io
import re

# (title, argv) of every subcommand with its own parser; `enf fit|validate|test` are LightningCLI (below)
CLI_COMMANDS = [
    ("enf", ["--help"]),
    ("enf encode", ["encode", "--help"]),
    ("enf forecast", ["forecast", "--help"]),
    ("enf edit", ["edit", "--help"]),
    ("enf shape export", ["shape", "export", "--help"]),
    ("enf classify", ["classify", "--help"]),
    ("enf data", ["data", "--help"]),
    ("enf data generate", ["data", "generate", "--help"]),
    ("enf data show", ["data", "show", "--help"]),
    ("enf bench", ["bench", "--help"]),
]
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):<code>~?([\w.]+)</code>")


def cli_help(argv: list[str]) -> str:
    from enf.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"enf {' '.join(argv)} exited with {exc.code}: {out.getvalue()}") from None
    return out.getvalue().strip()


def on_page_markdown(markdown, page, config, files):
    if "<!-- cli-reference -->" not in markdown:
        return markdown
    blocks = [f"## `{title}`\n\n```text\n{cli_help(argv)}\n```\n" for title, argv in CLI_COMMANDS]
    return markdown.replace("<!-- cli-reference -->", "\n".join(blocks))


def on_page_content(html, page, config, files):
    return _ROLE.sub(lambda m: f"<code>{m.group(1).rsplit('.', 1)[-1]}</code>", html)
