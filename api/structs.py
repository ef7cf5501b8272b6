"""Helpers for msgspec request bodies."""

from __future__ import annotations

import msgspec


def given(body: msgspec.Struct) -> dict:
    """The fields a client actually sent: UNSET ones (left out of a partial update) dropped."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
