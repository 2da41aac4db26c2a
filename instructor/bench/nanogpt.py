"""A GPT written the way nanoGPT's ``model.py`` writes it, for the bench's speed comparison (not for teaching).

The same function as :class:`labsupport.models.GPT` with ``activation="gelu"`` (nanoGPT uses ``nn.GELU()``, the exact
GELU) and dropout 0: learned positions, pre-norm blocks with causal self-attention through
``F.scaled_dot_product_attention(is_causal=True)`` and one fused ``c_attn`` projection, tied output matrix.
:func:`from_labsupport` copies a labsupport GPT's weights in, so the two can be timed on identical work (the tests
pin their logits equal).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd: int, d_ff: int):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, d_ff)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(d_ff, n_embd)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, d_ff: int, eps: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = MLP(n_embd, d_ff)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 d_ff: int | None = None, eps: float = 1e-5):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList(Block(n_embd, n_head, d_ff or 4 * n_embd, eps) for _ in range(n_layer)),
            ln_f=nn.LayerNorm(n_embd, eps=eps),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


@torch.no_grad()
def from_labsupport(gpt) -> NanoGPT:
    """A :class:`NanoGPT` with the configuration and the weights of a :class:`labsupport.models.GPT`."""
    cfg = gpt.config
    if cfg.activation != "gelu" or not cfg.tie_weights:
        raise ValueError("the nanoGPT-style model has the exact GELU and tied embeddings")
    d_ff = gpt.blocks[0].ff.linear1.out_features
    nano = NanoGPT(cfg.vocab_size, cfg.max_len, cfg.num_layers, cfg.num_heads, cfg.d_model, d_ff,
                   cfg.layer_norm_eps).to(gpt.tok_embed.weight.device)
    t = nano.transformer
    t.wte.weight.copy_(gpt.tok_embed.weight)
    t.wpe.weight.copy_(gpt.pos.embedding.weight)
    for ours, theirs in zip(gpt.blocks, t.h):
        a = ours.self_attn
        theirs.attn.c_attn.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        theirs.attn.c_attn.bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        theirs.attn.c_proj.load_state_dict(a.out_proj.state_dict())
        theirs.mlp.c_fc.load_state_dict(ours.ff.linear1.state_dict())
        theirs.mlp.c_proj.load_state_dict(ours.ff.linear2.state_dict())
        theirs.ln_1.load_state_dict(ours.norm1.state_dict())
        theirs.ln_2.load_state_dict(ours.norm2.state_dict())
    t.ln_f.load_state_dict(gpt.norm.state_dict())
    return nano
