"""Lab 7's data: Python's documentation as unlabelled text for BERT's pretraining, plus a small labelled task.

The text is :func:`labsupport.data.pydoc_text.topics` (``pydoc_data.topics``, about 80 help topics, 65,000 words,
shipped with every Python). It is cut into **windows** of ``window`` consecutive words (lower-cased words and
punctuation marks, :class:`~labsupport.data.tokenizers.WordTokenizer`), each encoded as::

    <bos> w_1 ... w_window <eos>        (<bos> plays BERT's [CLS], <eos> its [SEP])

**The labelled task: which part of the documentation is this passage from?** Five long help topics are the
classes (:data:`DEFAULT_CLASSES`: compound statements, the data model's special method names, string methods, the
debugger, sequence types). Labelling is what costs money in practice, so only ``labels_per_class`` windows per
class (16 by default, 80 in all) come with a label. The test set is every fourth block of four consecutive windows
of those topics: passages that take part in neither pretraining nor fine-tuning.

**The unlabelled text** for masked-LM pretraining is every other window of every topic (about 3,000 windows,
95,000 words): 40 times more text than the labelled examples. The vocabulary is built from it (words seen at least
``min_count`` times), so words that only occur in the test passages become ``<unk>``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from labsupport.data.pydoc_text import topics
from labsupport.data.tokenizers import WordTokenizer

__all__ = ["DEFAULT_CLASSES", "CLASS_DESCRIPTIONS", "TopicTask", "make_topic_task", "windows"]

#: The help topics that serve as classes of the labelled task.
DEFAULT_CLASSES = ("compound", "specialnames", "string-methods", "debugger", "typesseq")

#: One line per class, for printing.
CLASS_DESCRIPTIONS = {
    "compound": "compound statements (if, while, for, try, with, def, class)",
    "specialnames": "the data model's special method names (__init__, __add__, ...)",
    "string-methods": "the methods of str",
    "debugger": "pdb, the Python debugger",
    "typesseq": "sequence types (list, tuple, range) and their operations",
}


def windows(words: list[str], length: int) -> list[list[str]]:
    """Consecutive, non-overlapping windows of ``length`` words (the incomplete tail is dropped)."""
    return [words[i:i + length] for i in range(0, len(words) - length + 1, length)]


def _is_test(i: int, block: int = 4, every: int = 4) -> bool:
    """Window ``i`` is held out when its block of ``block`` consecutive windows is the last of every ``every``."""
    return (i // block) % every == every - 1


@dataclass
class TopicTask:
    """Unlabelled windows for pretraining and the few-label topic classification task (see the module docstring).

    Token tensors are ``(N, window + 2)`` LongTensors (every window has the same length: no padding needed);
    labels are ``(N,)`` class indices into :attr:`classes`.
    """

    tokenizer: WordTokenizer
    classes: tuple
    window: int
    pretrain: torch.Tensor
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    pool_size: dict = field(default_factory=dict)  #: unlabelled windows per class topic the labels were drawn from

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def special_ids(self) -> tuple:
        """Ids of the special tokens (never masked): ``<pad> <bos> <eos> <unk> <mask>``."""
        return tuple(sorted(self.tokenizer.special_ids))

    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id

    def decode(self, ids, skip_specials: bool = False) -> str:
        """Ids back to text (special tokens shown, e.g. ``<mask>``, unless ``skip_specials``)."""
        return self.tokenizer.decode(ids, skip_specials=skip_specials, stop_at_eos=False)

    def pretrain_batches(self, batch_size: int, seed: int = 0):
        """An endless iterator of ``batch_size`` random pretraining windows ``(B, window + 2)`` (seeded, CPU)."""
        g = torch.Generator().manual_seed(seed)
        while True:
            yield self.pretrain[torch.randint(len(self.pretrain), (batch_size,), generator=g)]

    def labelled_batches(self, batch_size: int, seed: int = 0):
        """An endless iterator of random labelled batches ``(tokens (B, window + 2), labels (B,))`` (seeded)."""
        g = torch.Generator().manual_seed(seed)
        while True:
            idx = torch.randint(len(self.train_x), (batch_size,), generator=g)
            yield self.train_x[idx], self.train_y[idx]

    def __repr__(self) -> str:
        return (f"TopicTask({len(self.classes)} classes, window={self.window} words, vocabulary {self.vocab_size:,},\n"
                f"          pretraining windows {tuple(self.pretrain.shape)}, labelled {tuple(self.train_x.shape)}, "
                f"test {tuple(self.test_x.shape)})")


def make_topic_task(classes=DEFAULT_CLASSES, window: int = 32, labels_per_class: int = 16, min_count: int = 5,
                    seed: int = 0) -> TopicTask:
    """Build the pretraining windows and the few-label task; the same arguments give the same tensors.

    ``labels_per_class`` windows per class are drawn (with ``seed``) from the class topics' non-test windows; those
    windows are part of the unlabelled pretraining text too (as in practice: the labelled examples are a sample of
    the text). The test windows are in neither.
    """
    docs = topics()
    missing = [c for c in classes if c not in docs]
    if missing:
        raise ValueError(f"unknown help topics {missing}; choose among {sorted(docs)}")
    splitter = WordTokenizer([], lowercase=True)
    pretrain_words, pool, test = [], {}, {}
    for name in sorted(docs):
        ws = windows(splitter.split(docs[name]), window)
        if name in classes:
            pool[name] = [w for i, w in enumerate(ws) if not _is_test(i)]
            test[name] = [w for i, w in enumerate(ws) if _is_test(i)]
            pretrain_words += pool[name]
        else:
            pretrain_words += ws
    tok = WordTokenizer.from_texts([" ".join(w) for w in pretrain_words], min_count=min_count, lowercase=True)

    def encode(ws: list[list[str]]) -> torch.Tensor:
        rows = [[tok.bos_id] + [tok.stoi.get(t, tok.unk_id) for t in w] + [tok.eos_id] for w in ws]
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), window + 2)

    g = torch.Generator().manual_seed(seed)
    train_x, train_y, test_x, test_y = [], [], [], []
    for c, name in enumerate(classes):
        if labels_per_class > len(pool[name]):
            raise ValueError(f"topic {name!r} has only {len(pool[name])} windows of {window} words")
        pick = torch.randperm(len(pool[name]), generator=g)[:labels_per_class].tolist()
        train_x.append(encode([pool[name][i] for i in pick]))
        train_y += [c] * labels_per_class
        test_x.append(encode(test[name]))
        test_y += [c] * len(test[name])
    return TopicTask(
        tokenizer=tok, classes=tuple(classes), window=window, pretrain=encode(pretrain_words),
        train_x=torch.cat(train_x), train_y=torch.tensor(train_y), test_x=torch.cat(test_x),
        test_y=torch.tensor(test_y), pool_size={n: len(pool[n]) for n in classes},
    )
