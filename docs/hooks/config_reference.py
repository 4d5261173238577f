"""MkDocs hook: a page line ``<!-- config-reference: ROOT -->`` becomes the generated reference of ROOT (``run``,
``grid``, ``sweep`` or ``finding``), rendered by ``lgrpo_bench.config.reference`` from the pydantic models at build
time, so no default, type or description is ever copied by hand into the site. An unknown ROOT stops the build.
"""

from __future__ import annotations

import re

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- config-reference: *([a-z_]+) *-->$", re.M)


def expand_markers(markdown: str, page_name: str = "page") -> str:
    """The markdown with every marker replaced by its generated tables (sections as ``###`` headings)."""
    from lgrpo_bench.config.reference import reference, render_markdown, roots

    def replace(match: re.Match) -> str:
        root = match.group(1)
        if root not in roots():
            raise PluginError(f"{page_name}: config-reference: unknown root {root!r} (known: {', '.join(roots())})")
        return render_markdown(reference(root), heading_level=3)

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs hook signature)
    return expand_markers(markdown, page.file.src_path)
