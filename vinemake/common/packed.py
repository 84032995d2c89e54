"""Keys and content hashes held packed: 17 bytes (a head's index, the digest) for 80-95.

A key or hash as text (`out-xxh3_128-` and 32 hex digits, or the digits alone) is a string
of 80-95 bytes in memory; packed it is a bytes object of 50. A run of a million rules holds
several for each file (the journal's records, the manager's tables), so they are held packed
and made text again where they are read. Any other text is held as it is.
"""

from __future__ import annotations

__all__ = ["pack", "unpack"]

_HEADS: list[str] = []  # every head seen, in order: the index a packed form starts with
_HEAD_INDEX: dict[str, bytes] = {}
_fromhex = bytes.fromhex  # (checked by hex(): the digits back, or not packed)
_MAX_HEADS = 255
_MAX_HEAD = 32


def pack(text: str) -> str | bytes:
    """`text` as it is held: packed if it ends in 32 lowercase hex digits after a head of 32
    characters at most (of 255 heads), else itself. unpack(pack(t)) == t, always."""
    if len(text) < 32:
        return text
    tail = text[-32:]
    try:
        raw = _fromhex(tail)
    except ValueError:
        return text
    if len(raw) != 16 or raw.hex() != tail:
        return text  # blanks or capitals, which fromhex takes and hex() does not give back
    head = text[:-32]
    index = _HEAD_INDEX.get(head)
    if index is None:
        if len(head) > _MAX_HEAD or len(_HEADS) >= _MAX_HEADS:
            return text
        index = _HEAD_INDEX[head] = bytes((len(_HEADS),))
        _HEADS.append(head)
    return index + raw


def unpack(held: str | bytes) -> str:
    """The text `pack` was given."""
    if isinstance(held, str):
        return held
    return _HEADS[held[0]] + held[1:].hex()
