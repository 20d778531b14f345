"""The gate's Data Docs views: GE's own pages, with their templates compiled once per process.

Each GE view builds its own jinja Environment, so every Data Docs build compiled the same ~17
templates again (~1 s of the ~2.5 s a version took). These views are GE's defaults (same
templates, same HTML); they only share one jinja bytecode cache, keyed by template name and
source checksum, so a changed template is compiled afresh. GE loads them by name through the
`view` option of the site's sections and index builder (see validate._context); nothing else
imports this module, so importing GE at its top costs nothing extra.
"""

from __future__ import annotations

from typing import Any

import jinja2
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView


class MemoryBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates held in memory for the process (jinja ships only disk/memcached)."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


COMPILED = MemoryBytecodeCache()


class PageView(DefaultJinjaPageView):
    """GE's validation / expectation suite page, sharing COMPILED."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = COMPILED


class IndexPageView(DefaultJinjaIndexPageView):
    """GE's index page, sharing COMPILED."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = COMPILED
