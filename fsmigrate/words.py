"""How counts read in messages: `1 batch`, `2 batches`, never `1 batches` or `batch(es)`."""

from __future__ import annotations

from typing import Optional


def plural(n: int, one: str, many: Optional[str] = None) -> str:
    """`1 batch`, `2 batches`, `1,000 operations` (`many`: the plural when not one + s)."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"
