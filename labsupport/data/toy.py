"""A toy task for small attention models (Labs 2 and 4): look up the previous token and the first token.

Each sequence is ``seq_len`` random tokens out of ``vocab_size``. At every position the answers are the
**previous** token (position 0, which has none, answers itself) and the **first** token of the sequence. Both are
pure look-ups, the kind of thing attention does and a position-wise network cannot: one needs a relative
position (``t - 1``), the other an absolute one (``0``).
"""
from __future__ import annotations

import torch

__all__ = ["lookup_batch", "lookup_batches"]


def lookup_batch(batch_size: int = 64, seq_len: int = 12, vocab_size: int = 16,
                 generator: torch.Generator | None = None, device=None):
    """One batch ``(tokens, previous, first)``, each ``(batch_size, seq_len)`` ids."""
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    previous = torch.cat([tokens[:, :1], tokens[:, :-1]], dim=1)
    first = tokens[:, :1].expand(-1, seq_len)
    return tokens.to(device), previous.to(device), first.to(device)


def lookup_batches(batch_size: int = 64, seq_len: int = 12, vocab_size: int = 16, seed: int = 0, device=None):
    """An endless iterator of :func:`lookup_batch` batches from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    while True:
        yield lookup_batch(batch_size, seq_len, vocab_size, g, device)
