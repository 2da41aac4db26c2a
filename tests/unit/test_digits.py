"""labsupport.data.digits: the stratified split, scaling, shifts and the batch iterator."""
import torch

from labsupport.data.digits import DigitBatches, load_digits_split, random_shift


def test_digits_split():
    s = load_digits_split()
    assert s.x_train.shape == (1347, 1, 8, 8) and s.x_test.shape == (450, 1, 8, 8)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.long
    assert torch.bincount(s.y_test).tolist() == [44, 46, 44, 46, 45, 46, 45, 45, 44, 45]  # stratified: ~25% each
    assert abs(s.x_train.mean().item()) < 1e-4 and abs(s.x_train.std().item() - 1) < 1e-3
    again = load_digits_split()
    assert torch.equal(again.x_test, s.x_test)
    # no test image is also a training image
    train_rows = {tuple(r) for r in s.x_train.flatten(1).tolist()}
    assert sum(tuple(r) in train_rows for r in s.x_test.flatten(1).tolist()) <= 2  # the data set has a few duplicates
    raw = load_digits_split(normalize=False)
    assert raw.x_train.min() >= 0 and raw.x_train.max() <= 1
    torch.testing.assert_close(s.unnormalize(s.x_test), raw.x_test)


def test_random_shift_and_batches():
    x = torch.zeros(50, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0
    g = torch.Generator().manual_seed(0)
    y = random_shift(x, 1, fill=0.0, generator=g)
    assert y.shape == x.shape and torch.equal(y.sum((1, 2, 3)), x.sum((1, 2, 3)))  # the blob moves, stays whole
    centres = {(int(i[0].nonzero()[:, 0].min()), int(i[0].nonzero()[:, 1].min())) for i in y}
    assert centres <= {(r, c) for r in (2, 3, 4) for c in (2, 3, 4)} and len(centres) > 4
    assert torch.equal(random_shift(x, 0), x)
    s = load_digits_split()
    b = DigitBatches(s.x_train, s.y_train, batch_size=16, seed=0)
    xb, yb = next(b)
    assert xb.shape == (16, 1, 8, 8) and yb.shape == (16,)
    assert iter(b) is b  # an endless iterator, what train() takes
    xb2, _ = next(DigitBatches(s.x_train, s.y_train, batch_size=16, seed=0))
    assert torch.equal(xb, xb2)
