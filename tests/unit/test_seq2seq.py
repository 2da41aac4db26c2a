"""labsupport.models.seq2seq: shapes, masks, causality, sharing, greedy decoding, the paper's parameter count."""
import pytest
import torch
import torch.nn as nn

from labsupport.models import Seq2SeqTransformer, count_parameters
from labsupport.training import greedy_decode

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def small_seq2seq(**kw):
    torch.manual_seed(0)
    cfg = dict(d_model=32, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, d_ff=64, dropout=0.0, max_len=64)
    cfg.update(kw)
    return Seq2SeqTransformer(src_vocab=20, tgt_vocab=23, **cfg).eval()


def test_seq2seq_shapes_and_masks():
    model = small_seq2seq()
    src = torch.randint(5, 20, (3, 7))
    src[0, 5:] = 0
    tgt = torch.randint(5, 23, (3, 6))
    logits = model(src, tgt)
    assert logits.shape == (3, 6, 23)
    assert model.make_src_mask(src).shape == (3, 1, 1, 7) and not model.make_src_mask(src)[0, 0, 0, 6]
    tm = model.make_tgt_mask(tgt)
    assert tm.shape == (3, 1, 6, 6) and tm[1, 0].tolist() == torch.ones(6, 6, dtype=torch.bool).tril().tolist()
    cross = model.cross_attention(src, tgt)  # on request: one teacher-forced pass, weights recorded
    assert cross.shape == (3, 4, 6, 7)
    torch.testing.assert_close(cross.sum(-1), torch.ones(3, 4, 6))
    # padded source positions receive no cross-attention
    assert cross[0, :, :, 5:].abs().max() == 0
    assert not torch.equal(model.cross_attention(src, tgt, layer=0), cross)


def test_seq2seq_padding_does_not_change_outputs():
    model = small_seq2seq()
    src = torch.randint(5, 20, (1, 5))
    tgt = torch.randint(5, 23, (1, 4))
    a = model(src, tgt)
    b = model(torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1),
              torch.cat([tgt, torch.zeros(1, 2, dtype=torch.long)], 1))
    torch.testing.assert_close(a, b[:, :4], atol=1e-5, rtol=1e-5)


def test_seq2seq_decoder_is_causal():
    model = small_seq2seq()
    src = torch.randint(5, 20, (2, 6))
    tgt = torch.randint(5, 23, (2, 8))
    a = model(src, tgt)
    tgt2 = tgt.clone()
    tgt2[:, 5] = (tgt2[:, 5] + 1 - 5) % 18 + 5
    b = model(src, tgt2)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-5, rtol=1e-5)
    assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-4


def test_seq2seq_sharing_and_tying():
    sizes = dict(src_vocab=30, tgt_vocab=30, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                 d_ff=32)
    m = Seq2SeqTransformer(**sizes, share_embeddings=True, tie_output=True)
    assert m.src_embed.weight is m.tgt_embed.weight is m.generator.weight
    untied = Seq2SeqTransformer(**sizes)
    assert count_parameters(untied) - count_parameters(m) == 2 * 30 * 16
    with pytest.raises(ValueError):
        Seq2SeqTransformer(src_vocab=30, tgt_vocab=31, share_embeddings=True)


def test_greedy_decode_matches_step_by_step_argmax():
    model = small_seq2seq()
    src = torch.randint(5, 20, (4, 6))
    src[1, 4:] = 0
    ys = greedy_decode(model, src, max_len=7, bos=1, eos=2)
    assert ys.shape[0] == 4 and ys.shape[1] <= 8 and (ys[:, 0] == 1).all()
    # teacher-forcing the decoded prefix reproduces each greedy choice (before eos)
    logits = model(src, ys[:, :-1])
    choice = logits.argmax(-1)
    for b in range(4):
        for t in range(ys.shape[1] - 1):
            if ys[b, t] == 2 or (t > 0 and (ys[b, 1:t + 1] == 2).any()):
                break
            assert choice[b, t] == ys[b, t + 1]


def test_paper_base_parameter_count():
    with torch.device("meta"):
        model = Seq2SeqTransformer.paper_base()
    n = count_parameters(model)
    D, F, V, N = 512, 2048, 37000, 6
    attn = 4 * (D * D + D)
    ff = D * F + F + F * D + D
    expected = V * D + N * (attn + ff + 2 * 2 * D) + N * (2 * attn + ff + 3 * 2 * D) + V  # + output bias
    assert n == expected == 63_119_496
    assert abs(n - 65e6) / 65e6 < 0.04  # the paper's Table 3 says 65M


def test_count_parameters_trainable_only():
    m = nn.Linear(3, 2)
    m.bias.requires_grad_(False)
    assert count_parameters(m) == 8 and count_parameters(m, trainable_only=True) == 6


def test_final_norms_make_the_stacks_stock_nn_transformer():
    """final_norms=True adds the final encoder/decoder LayerNorms that nn.Transformer has: same weights, same output."""
    from labsupport.attention import causal_mask, to_torch_mask

    torch.manual_seed(7)
    D, H, F_, N = 16, 4, 32, 2
    theirs = nn.Transformer(D, H, N, N, F_, dropout=0.0, batch_first=True).eval()
    model = Seq2SeqTransformer(src_vocab=10, tgt_vocab=10, d_model=D, num_heads=H, num_encoder_layers=N,
                               num_decoder_layers=N, d_ff=F_, dropout=0.0, final_norms=True).eval()
    assert model.encoder.norm is not None and model.decoder.norm is not None
    assert Seq2SeqTransformer(src_vocab=10, tgt_vocab=10).encoder.norm is None  # the paper's post-norm default
    model.encoder.load_from_torch(theirs.encoder)
    model.decoder.load_from_torch(theirs.decoder)
    x, y = torch.randn(2, 7, D), torch.randn(2, 5, D)
    src_keep = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :]
    want = theirs(x, y, tgt_mask=to_torch_mask(causal_mask(5)), src_key_padding_mask=~src_keep[:, 0, 0],
                  memory_key_padding_mask=~src_keep[:, 0, 0])
    got = model.decoder(y, model.encoder(x, src_keep), causal_mask(5), src_keep)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
