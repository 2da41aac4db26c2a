"""Python's own documentation as a text corpus (Labs 6-7): ``pydoc_data.topics``, shipped with every Python.

``pydoc_data.topics.topics`` maps about 80 help topics ("assert", "for", "numbers", ...) to the plain text that
``help("assert")`` prints: about 465,000 characters of English prose about Python with grammar rules and code
examples mixed in. It is small enough to train a character-level model on a laptop CPU in a minute or two, and
regular enough (the same words, the same layout) for such a model to learn a lot of it.

The split is by **topic**, so validation text is never seen in training: every ``val_every``-th topic (in
alphabetical order, starting from ``val_offset``) is held out, roughly 10 % of the characters.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from labsupport.data.tokenizers import CharTokenizer

__all__ = ["topics", "load_text", "PydocText"]


def topics() -> dict[str, str]:
    """All help topics of this Python: ``{name: text}``."""
    from pydoc_data.topics import topics as _topics

    return dict(_topics)


def load_text(names=None, separator: str = "\n\n") -> str:
    """The text of the topics ``names`` (default: all, alphabetically) joined by ``separator``."""
    t = topics()
    names = sorted(t) if names is None else names
    return separator.join(t[n].strip("\n") for n in names)


@dataclass
class PydocText:
    """Train/validation split of the documentation text, a character tokenizer and random training windows.

    ``train_ids`` and ``val_ids`` are 1-D LongTensors of character ids. :meth:`batch` draws ``batch_size`` random
    windows of ``block_size + 1`` characters: inputs are the first ``block_size``, targets the last ``block_size``
    (the same text shifted by one character).
    """

    val_every: int = 10
    val_offset: int = 5
    train_names: list = field(init=False)
    val_names: list = field(init=False)

    def __post_init__(self):
        names = sorted(topics())
        self.val_names = names[self.val_offset::self.val_every]
        self.train_names = [n for n in names if n not in self.val_names]
        self.train_text = load_text(self.train_names)
        self.val_text = load_text(self.val_names)
        # the vocabulary covers both parts (characters only, no specials): no <unk> needed in validation
        self.tokenizer = CharTokenizer.from_text(self.train_text + self.val_text, specials=())
        self.train_ids = torch.tensor(self.tokenizer.encode(self.train_text), dtype=torch.long)
        self.val_ids = torch.tensor(self.tokenizer.encode(self.val_text), dtype=torch.long)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def batch(self, batch_size: int, block_size: int, split: str = "train", generator: torch.Generator | None = None,
              device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows ``(x (B, block_size), y (B, block_size))`` with ``y[:, t] = x[:, t + 1]``."""
        ids = self.train_ids if split == "train" else self.val_ids
        starts = torch.randint(0, len(ids) - block_size - 1, (batch_size,), generator=generator)
        window = torch.stack([ids[s: s + block_size + 1] for s in starts.tolist()])
        if device is not None:
            window = window.to(device)
        return window[:, :-1], window[:, 1:]

    def batches(self, batch_size: int, block_size: int, seed: int = 0, device=None):
        """An endless iterator of training batches (seeded)."""
        g = torch.Generator().manual_seed(seed)
        while True:
            yield self.batch(batch_size, block_size, "train", g, device)

    def val_windows(self, block_size: int, stride: int | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation text cut into consecutive windows (every character predicted once when
        ``stride == block_size``): ``(x (N, block_size), y (N, block_size))``."""
        stride = block_size if stride is None else stride
        ids = self.val_ids
        starts = range(0, len(ids) - block_size - 1, stride)
        window = torch.stack([ids[s: s + block_size + 1] for s in starts])
        if device is not None:
            window = window.to(device)
        return window[:, :-1], window[:, 1:]
