"""Speed ratios, each measured in one run with the two sides interleaved (labsupport / the other; 1.0 = as fast).

* ``gpt_step``: one training step (forward, backward, clip, AdamW) of Lab 6's GPT on Lab 6's data against the
  nanoGPT-style model of :mod:`instructor.bench.nanogpt` with the same weights. Target <= 1.0.
* ``encoder_step``: one training step of an encoder built from :class:`labsupport.blocks.Encoder` against the same
  model built from ``nn.TransformerEncoderLayer`` (same weights). Target <= 1.0.
* ``attention``: :class:`labsupport.attention.MultiHeadAttention` (no weights asked for: the fused kernel) against
  ``nn.MultiheadAttention``, forward; and, for information, the readable reference
  :func:`labsupport.attention.scaled_dot_product_attention` against ``F.scaled_dot_product_attention``.

Each side runs ``rounds`` times ``repeats`` calls, alternating; the ratio is the median over rounds of the two
medians, which cancels most of the drift of a shared machine.
"""
from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torch import nn

from labsupport.device import time_call


def interleaved(ours, theirs, device, rounds: int = 5, repeats: int = 5) -> dict:
    """Median seconds of each side and the median per-round ratio, alternating the two."""
    ours(), theirs()  # warm-up
    t_ours, t_theirs, ratios = [], [], []
    for _ in range(rounds):
        a = time_call(ours, repeats=repeats, warmup=0, device=device)
        b = time_call(theirs, repeats=repeats, warmup=0, device=device)
        t_ours.append(a)
        t_theirs.append(b)
        ratios.append(a / b)
    return {"labsupport_ms": 1e3 * statistics.median(t_ours), "other_ms": 1e3 * statistics.median(t_theirs),
            "ratio": statistics.median(ratios)}


def _train_step(model, x, y, vocab):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def bench_gpt_step(device, batch: int = 32, block: int = 64) -> dict:
    """Lab 6's configuration (d_model 128, 4 heads, 2 blocks, context 64, batch 32) and data."""
    from instructor.bench.nanogpt import from_labsupport
    from labsupport.data.pydoc_text import PydocText
    from labsupport.models import GPT, count_parameters

    data = PydocText()
    V = data.vocab_size
    torch.manual_seed(0)
    ours = GPT(vocab_size=V, max_len=block, d_model=128, num_heads=4, num_layers=2, dropout=0.0).to(device)
    theirs = from_labsupport(ours)
    x, y = data.batch(batch, block, generator=torch.Generator().manual_seed(1), device=device)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    res = interleaved(_train_step(ours, x, y, V), _train_step(theirs, x, y, V), device)
    return {**res, "name": "GPT training step vs nanoGPT-style model", "target": 1.0, "max_abs_diff": diff,
            "shape": f"Lab 6: {count_parameters(ours):,} params, B={batch} L={block}"}


def bench_encoder_step(device, B=32, L=128, D=128, H=4, layers=2, d_ff=512, vocab=100) -> dict:
    """An encoder classifier built from labsupport.blocks.Encoder vs nn.TransformerEncoder, same weights."""
    from labsupport.blocks import Encoder

    class Model(nn.Module):
        def __init__(self, ours: bool):
            super().__init__()
            self.embed = nn.Embedding(vocab, D)
            if ours:
                self.encoder = Encoder(num_layers=layers, d_model=D, num_heads=H, d_ff=d_ff, dropout=0.0,
                                       norm_first=True)
            else:
                layer = nn.TransformerEncoderLayer(D, H, d_ff, dropout=0.0, batch_first=True, norm_first=True)
                self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(D), enable_nested_tensor=False)
            self.head = nn.Linear(D, vocab)

        def forward(self, x):
            return self.head(self.encoder(self.embed(x)))

    torch.manual_seed(0)
    theirs = Model(False).to(device)
    ours = Model(True).to(device)
    ours.embed.load_state_dict(theirs.embed.state_dict())
    ours.head.load_state_dict(theirs.head.state_dict())
    ours.encoder.load_from_torch(theirs.encoder)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, vocab, (B, L), generator=g).to(device)
    y = torch.randint(0, vocab, (B, L), generator=g).to(device)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    res = interleaved(_train_step(ours, x, y, vocab), _train_step(theirs, x, y, vocab), device)
    return {**res, "name": "encoder training step vs nn.TransformerEncoderLayer", "target": 1.0,
            "max_abs_diff": diff, "shape": f"B={B} L={L} D={D} H={H} layers={layers} d_ff={d_ff}"}


@torch.no_grad()
def bench_attention(device, B=8, L=256, D=256, H=8) -> list[dict]:
    """Multi-head self-attention forward, causal: ours (fused path) vs nn.MultiheadAttention; and the readable
    reference function vs F.scaled_dot_product_attention (information: the twin of Labs 1-2 is not fused)."""
    from labsupport.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention

    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(D, H, batch_first=True).to(device).eval()
    ours = MultiHeadAttention(D, H).load_from_torch(theirs).to(device).eval()
    x = torch.randn(B, L, D, device=device)
    blocked = ~causal_mask(L, device=device)
    diff = (ours(x, is_causal=True, need_weights=False)[0]
            - theirs(x, x, x, attn_mask=blocked, need_weights=False)[0]).abs().max().item()
    mha = interleaved(lambda: ours(x, is_causal=True, need_weights=False),
                      lambda: theirs(x, x, x, attn_mask=blocked, is_causal=True, need_weights=False), device)
    q, k, v = (torch.randn(B, H, L, D // H, device=device) for _ in range(3))
    mask = causal_mask(L, device=device)
    ref = interleaved(lambda: scaled_dot_product_attention(q, k, v, mask),
                      lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), device)
    return [{**mha, "name": "MultiHeadAttention forward vs nn.MultiheadAttention", "target": 1.0,
             "max_abs_diff": diff, "shape": f"B={B} L={L} D={D} H={H}, causal"},
            {**ref, "name": "reference scaled_dot_product_attention vs F.scaled_dot_product_attention",
             "target": None, "max_abs_diff": None, "shape": f"B={B} H={H} L={L} d={D // H}, causal (readable twin)"}]


def run_all(device) -> list[dict]:
    return [bench_gpt_step(device), bench_encoder_step(device), *bench_attention(device)]


def format_micro(rows: list[dict]) -> str:
    lines = ["| benchmark | shape | labsupport ms | other ms | ratio | target | max abs difference |",
             "|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        target = "-"
        if r["target"] is not None:
            target = f"<= {r['target']:.1f} {'ok' if r['ratio'] <= r['target'] else 'MISSED'}"
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        lines.append(f"| {r['name']} | {r['shape']} | {r['labsupport_ms']:.2f} | {r['other_ms']:.2f} | "
                     f"{r['ratio']:.2f} | {target} | {diff} |")
    return "\n".join(lines)
