"""labsupport.data.pydoc_tasks: Lab 7's pretraining windows and its few-label topic task."""
import pytest
import torch

from labsupport.data.pydoc_tasks import DEFAULT_CLASSES, make_topic_task


@pytest.fixture(scope="module")
def task():
    return make_topic_task(window=16, labels_per_class=4, min_count=5, seed=0)


def test_windows_have_cls_sep_and_the_window_length(task):
    tok = task.tokenizer
    assert task.pretrain.shape[1] == task.train_x.shape[1] == task.test_x.shape[1] == 16 + 2
    for x in (task.pretrain, task.train_x, task.test_x):
        assert (x[:, 0] == tok.bos_id).all() and (x[:, -1] == tok.eos_id).all()
    assert len(task.classes) == len(DEFAULT_CLASSES)
    assert torch.bincount(task.train_y, minlength=len(task.classes)).tolist() == [4] * len(task.classes)
    assert task.vocab_size == len(tok) and task.mask_id == tok.mask_id


def test_test_windows_are_held_out_and_the_same_for_every_seed(task):
    other = make_topic_task(window=16, labels_per_class=4, min_count=5, seed=1)
    assert torch.equal(other.test_x, task.test_x) and torch.equal(other.test_y, task.test_y)
    assert not torch.equal(other.train_x, task.train_x)  # another draw of labelled windows
    train_rows = {tuple(r) for r in task.pretrain.tolist()}
    shared = sum(tuple(r) in train_rows for r in task.test_x.tolist())
    # held out by position; the documentation repeats some passages word for word (58 of 672 test windows here)
    assert shared < 0.1 * len(task.test_x)


def test_batches_are_seeded_endless_iterators(task):
    a, b = task.pretrain_batches(8, seed=3), task.pretrain_batches(8, seed=3)
    assert iter(a) is a
    first = next(a)
    assert first.shape == (8, 18) and torch.equal(first, next(b))
    assert not torch.equal(next(a), first)
    x, y = next(task.labelled_batches(5, seed=0))
    assert x.shape == (5, 18) and y.shape == (5,) and y.max() < len(task.classes)
    assert "pad" not in task.decode(x[0], skip_specials=True)


def test_unknown_topic_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown help topics"):
        make_topic_task(classes=("no-such-topic",))
