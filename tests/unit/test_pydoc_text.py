"""labsupport.data.pydoc_text: Python's documentation text, its split and its batches (Lab 6)."""
import torch

from labsupport.data.pydoc_text import PydocText, load_text, topics


def test_pydoc_text_split_and_batches():
    t = topics()
    assert len(t) > 50 and "assert" in t
    data = PydocText()
    assert not set(data.train_names) & set(data.val_names)
    assert 0.05 < len(data.val_ids) / (len(data.train_ids) + len(data.val_ids)) < 0.2
    assert len(data.train_ids) + len(data.val_ids) > 400_000
    assert data.tokenizer.decode(data.val_ids[:200]) == data.val_text[:200]
    assert load_text(["assert"]).startswith('The "assert" statement')
    x, y = data.batch(4, 32, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])
    xv, yv = data.val_windows(64)
    assert xv.shape[1] == 64 and torch.equal(xv[1, :], data.val_ids[64:128]) and torch.equal(yv[0], data.val_ids[1:65])
    assert data.vocab_size == len(data.tokenizer) and data.tokenizer.pad_id is None
