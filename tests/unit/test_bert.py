"""labsupport.models.bert: shapes, full-size parameter counts, equality with PyTorch's own layers (copied weights),
BERT's masking rules, padding invariance."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labsupport.models import count_parameters
from labsupport.models.bert import BERT, IGNORE_INDEX, accuracy, mask_tokens, mlm_loss, mlm_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


SPECIALS = (0, 1, 2, 3, 4)
PAD, CLS, SEP, MASK = 0, 1, 2, 4


def small_bert(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, max_len=16, d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0, num_classes=3)
    cfg.update(kw)
    return BERT(**cfg).eval()


def test_bert_shapes_and_tied_embeddings():
    m = small_bert()
    x = torch.randint(5, 50, (3, 10))
    assert m.encode(x).shape == (3, 10, 32)
    assert m(x).shape == (3, 10, 50)
    assert m.classify(x).shape == (3, 3)
    picked = torch.zeros(3, 10, dtype=torch.bool)
    picked[0, 2] = picked[2, 5] = True
    assert m.mlm_logits(m.encode(x), picked).shape == (2, 50)
    assert m.mlm_head.embedding.weight is m.embeddings.token.weight
    torch.testing.assert_close(m.mlm_logits(m.encode(x), picked), m(x)[picked])
    with pytest.raises(ValueError):
        m.encode(torch.randint(5, 50, (1, 17)))


def test_bert_base_counts_on_meta():
    with torch.device("meta"):
        m = BERT.bert_base()
    # bert-base-uncased's BertModel (embeddings + 12 layers + pooler)
    assert m.encoder_parameters() == 109_482_240
    # plus MLM transform (768^2 + 768 + 2 * 768), MLM output bias (30522), 2-class classifier (768 * 2 + 2)
    assert count_parameters(m) == 109_482_240 + 592_128 + 30_522 + 1_538


def test_bert_encoder_equals_torch_layers():
    """embeddings -> nn.TransformerEncoder (post-norm, GELU, eps 1e-12) with our weights copied in."""
    m = small_bert()
    torch_layers = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True, layer_norm_eps=1e-12),
        num_layers=2, enable_nested_tensor=False).eval()
    with torch.no_grad():
        for ours, theirs in zip(m.encoder.layers, torch_layers.layers):
            a = ours.self_attn
            theirs.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            theirs.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
            theirs.linear1.load_state_dict(ours.ff.linear1.state_dict())
            theirs.linear2.load_state_dict(ours.ff.linear2.state_dict())
            theirs.norm1.load_state_dict(ours.norm1.state_dict())
            theirs.norm2.load_state_dict(ours.norm2.state_dict())
    x = torch.randint(5, 50, (2, 9))
    x[1, 6:] = PAD
    seg = torch.zeros_like(x)
    seg[:, 5:] = 1
    e = m.embeddings
    emb = F.layer_norm(e.token(x) + e.segment(seg) + e.position.weight[:9], (32,), e.norm.weight,
                       e.norm.bias, 1e-12)
    want = torch_layers(emb, src_key_padding_mask=x == PAD)
    got = m.encode(x, seg)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, :6], want[1, :6], atol=1e-5, rtol=1e-5)


def test_bert_padding_invariance():
    """Appending padding changes neither the real positions' hidden states nor the class logits."""
    m = small_bert()
    x = torch.randint(5, 50, (2, 7))
    x[:, 0] = CLS
    padded = torch.cat([x, torch.full((2, 5), PAD)], dim=1)
    torch.testing.assert_close(m.encode(padded)[:, :7], m.encode(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.classify(padded), m.classify(x), atol=1e-5, rtol=1e-5)
    # without the mask the padding would leak in: the test can fail
    unmasked = m.encoder(m.embeddings(padded), None)[:, :7]
    assert not torch.allclose(unmasked, m.encode(x), atol=1e-3)


def test_bert_segments_and_positions_matter():
    m = small_bert()
    x = torch.randint(5, 50, (1, 8))
    assert not torch.allclose(m.encode(x), m.encode(x, torch.ones_like(x)))
    assert not torch.allclose(m.encode(x)[0, 1], m.encode(x.flip(1))[0, -2])


def _batch(B=500, L=40, V=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(5, V, (B, L), generator=g)
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    t[torch.arange(L)[None] >= lengths[:, None]] = PAD
    t[:, 0] = CLS
    t[torch.arange(B), lengths - 1] = SEP
    return t


def test_mask_tokens_rules():
    V = 80
    tokens = _batch(V=V)
    before = tokens.clone()
    inputs, labels = mask_tokens(tokens, MASK, V, SPECIALS, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(tokens, before), "tokens must not be modified in place"
    special = torch.isin(tokens, torch.tensor(SPECIALS))
    picked = labels != IGNORE_INDEX
    assert not (picked & special).any(), "special tokens are never picked"
    assert torch.equal(labels[picked], tokens[picked])
    assert torch.equal(inputs[~picked], tokens[~picked])
    rate = picked.sum().item() / (~special).sum().item()
    assert abs(rate - 0.15) < 0.01
    n = picked.sum().item()
    masked = (picked & (inputs == MASK)).sum().item() / n
    random = (picked & (inputs != MASK) & (inputs != tokens)).sum().item() / n
    kept = (picked & (inputs == tokens)).sum().item() / n
    assert abs(masked - 0.8) < 0.025 and abs(random - 0.1 * (1 - 1 / 75)) < 0.02 and abs(kept - 0.1) < 0.02
    assert not torch.isin(inputs[picked & (inputs != MASK)], torch.tensor(SPECIALS)).any(), "random ids are ordinary"
    # reproducible with a seeded generator, different with another seed
    again = mask_tokens(tokens, MASK, V, SPECIALS, 0.15, torch.Generator().manual_seed(1))
    other = mask_tokens(tokens, MASK, V, SPECIALS, 0.15, torch.Generator().manual_seed(2))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)
    assert not torch.equal(other[1], labels)
    half = mask_tokens(tokens, MASK, V, SPECIALS, 0.5, torch.Generator().manual_seed(3))[1]
    assert abs((half != IGNORE_INDEX).sum().item() / (~special).sum().item() - 0.5) < 0.02


def test_mlm_loss_counts_picked_positions_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 10, generator=g)
    target = torch.randint(0, 10, (3, 6), generator=g)
    picked = torch.rand(3, 6, generator=g) < 0.4
    picked[0, 0] = True
    labels = torch.where(picked, target, torch.full_like(target, IGNORE_INDEX))
    loss, acc = mlm_loss(logits, labels)
    logp = logits.log_softmax(-1)
    manual = -torch.stack([logp[b, i, target[b, i]] for b in range(3) for i in range(6) if picked[b, i]]).mean()
    torch.testing.assert_close(loss, manual)
    assert acc.item() == pytest.approx((logits.argmax(-1) == target)[picked].float().mean().item())
    loss2, _ = mlm_loss(logits[picked], labels[picked])
    torch.testing.assert_close(loss2, manual)


def test_mlm_step_and_finetune_learn():
    """A few hundred steps on a toy language (each sequence repeats one token) bring the MLM loss down."""
    m = small_bert(dropout=0.0).train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(150):
        tok = torch.randint(5, 50, (32, 1), generator=g).expand(32, 12).clone()
        tok[:, 0] = CLS
        loss, acc = mlm_step(m, tok, MASK, SPECIALS, g, mask_prob=0.3)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first and acc.item() > 0.5
    x = torch.randint(5, 50, (10, 6))
    assert 0.0 <= accuracy(m, x, torch.zeros(10, dtype=torch.long)) <= 1.0
