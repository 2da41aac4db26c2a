"""labsupport.positional against the formula of Vaswani et al. (2017), computed independently here."""
import math

import numpy as np
import pytest
import torch

from labsupport import positional as P


def formula_table(max_len, d_model, base=10000.0):
    """PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(pos / base^(2i/d)), with plain Python loops."""
    pe = np.zeros((max_len, d_model))
    for pos in range(max_len):
        for j in range(d_model):
            i = j // 2
            angle = pos / base ** (2 * i / d_model)
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


@pytest.mark.parametrize("max_len,d_model,base",
                         [(1, 2, 1e4), (17, 8, 1e4), (50, 32, 1e4), (9, 7, 1e4), (20, 6, 100.0)])
def test_sinusoidal_matches_formula(max_len, d_model, base):
    got = P.sinusoidal_encoding(max_len, d_model, base)
    assert got.shape == (max_len, d_model) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), formula_table(max_len, d_model, base), atol=1e-6)


def test_sinusoidal_first_row_and_range():
    pe = P.sinusoidal_encoding(100, 16)
    assert torch.equal(pe[0, 0::2], torch.zeros(8)) and torch.equal(pe[0, 1::2], torch.ones(8))
    assert pe.abs().max() <= 1.0
    # every pair (sin, cos) lies on the unit circle
    torch.testing.assert_close(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, torch.ones(100, 8))


@pytest.mark.parametrize("d_model", [2, 8, 64])
@pytest.mark.parametrize("k", [1, 3, 25])
def test_relative_offset_is_a_fixed_rotation(d_model, k):
    pe = P.sinusoidal_encoding(200, d_model, dtype=torch.float64)
    M = P.offset_rotation(k, d_model, dtype=torch.float64)
    # the same M maps every position to the one k steps later
    torch.testing.assert_close(pe[k:] , pe[:-k] @ M.T, atol=1e-5, rtol=0)
    # it is orthogonal (a rotation) with determinant +1
    torch.testing.assert_close(M @ M.T, torch.eye(d_model, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.linalg.det(M).item() == pytest.approx(1.0)
    # found by least squares from the table alone, it is the same matrix (for wide tables the slowest
    # frequencies barely move over 200 positions, so the fit is ill-conditioned: only small d_model)
    if d_model > 8:
        return
    fitted = torch.linalg.lstsq(pe[:-k], pe[k:]).solution.T
    torch.testing.assert_close(fitted, M, atol=1e-4, rtol=0)


def test_offset_rotation_composes():
    torch.testing.assert_close(P.offset_rotation(3, 16) @ P.offset_rotation(4, 16), P.offset_rotation(7, 16),
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        P.offset_rotation(1, 5)


def test_sinusoidal_module_adds_table_with_offset():
    m = P.SinusoidalPositionalEncoding(d_model=12, max_len=40)
    assert len(list(m.parameters())) == 0 and "pe" not in m.state_dict()
    x = torch.randn(3, 7, 12)
    torch.testing.assert_close(m(x), x + P.sinusoidal_encoding(40, 12)[:7])
    torch.testing.assert_close(m(x, offset=5), x + P.sinusoidal_encoding(40, 12)[5:12])
    with pytest.raises(ValueError, match=r"positions 40\.\.40 are outside the table of max_len=40 \(positions 0"):
        m(torch.randn(1, 41, 12))
    with pytest.raises(ValueError, match=r"positions 40\.\.41 are outside"):
        m(x, offset=35)
    with pytest.raises(ValueError, match=r"positions -2\.\.-1 are negative"):
        m(x, offset=-2)


def test_out_of_range_message_names_only_the_positions_outside():
    """A reviewer's case: 1100 positions in a 1024-position table; positions 0..1023 are fine."""
    m = P.LearnedPositionalEncoding(max_len=1024, d_model=4)
    with pytest.raises(ValueError, match=r"positions 1024\.\.1099 are outside the table of max_len=1024"):
        m(torch.zeros(1, 1100, 4))


def test_sinusoidal_module_dropout_only_in_training():
    m = P.SinusoidalPositionalEncoding(d_model=8, max_len=10, dropout=0.5)
    x = torch.randn(2, 10, 8)
    m.train()
    assert (m(x) == 0).any()
    m.eval()
    torch.testing.assert_close(m(x), x + m.pe)


def test_learned_encoding_shapes_and_offset():
    torch.manual_seed(0)
    m = P.LearnedPositionalEncoding(max_len=16, d_model=10)
    assert isinstance(m.embedding, torch.nn.Embedding) and m.embedding.weight.shape == (16, 10)
    assert sum(p.numel() for p in m.parameters()) == 160
    assert m.embedding.weight.std().item() < 0.05
    x = torch.randn(4, 6, 10)
    out = m(x, offset=3)
    assert out.shape == (4, 6, 10)
    torch.testing.assert_close(out, x + m.embedding.weight[3:9])
    out.sum().backward()
    assert m.embedding.weight.grad[3:9].abs().sum() > 0 and m.embedding.weight.grad[:3].abs().sum() == 0
    with pytest.raises(ValueError, match="max_len"):
        m(torch.randn(1, 17, 10))


@pytest.mark.parametrize("factorized", [True, False])
def test_learned_2d(factorized):
    torch.manual_seed(0)
    m = P.LearnedPositionalEncoding2D(3, 5, 8, factorized=factorized)
    table = m.table()
    assert table.shape == (15, 8)
    x = torch.randn(2, 15, 8)
    torch.testing.assert_close(m(x), x + table)
    if factorized:
        assert sum(p.numel() for p in m.parameters()) == (3 + 5) * 8
        r, c = 2, 4
        torch.testing.assert_close(table[r * 5 + c], m.row.weight[r] + m.col.weight[c])
    else:
        assert sum(p.numel() for p in m.parameters()) == 15 * 8
    with pytest.raises(ValueError, match="patches"):
        m(torch.randn(2, 14, 8))


def test_sinusoidal_2d_rows_and_columns():
    gh, gw, d = 4, 6, 16
    pe = P.sinusoidal_encoding_2d(gh, gw, d)
    assert pe.shape == (gh * gw, d)
    rows, cols = formula_table(gh, d // 2), formula_table(gw, d // 2)
    for r in range(gh):
        for c in range(gw):
            np.testing.assert_allclose(pe[r * gw + c].numpy(), np.concatenate([rows[r], cols[c]]), atol=1e-6)
    with pytest.raises(ValueError):
        P.sinusoidal_encoding_2d(2, 2, 7)


def test_modules_follow_device_and_dtype():
    m = P.SinusoidalPositionalEncoding(8, 20)
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    assert m(x).dtype == torch.float64


def test_similarity_table_and_grid():
    import matplotlib
    matplotlib.use("agg")
    table = P.sinusoidal_encoding_2d(3, 4, 16)
    sim = P.cosine_similarity_table(table)
    assert sim.shape == (12, 12)
    torch.testing.assert_close(sim.diagonal(), torch.ones(12))
    fig = P.similarity_grid(table, 3, 4, title="t")
    assert len(fig.axes) == 12 + 1  # the small maps and the colour bar
