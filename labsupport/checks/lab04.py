"""Self-checks of Lab 4, the transformer block.

Each check builds the student's module, loads weights it made itself (``load_state_dict``), runs it on random
inputs (``seed`` picks them; the notebook uses the default, grading uses others) and compares the result with
trusted code run on the same weights: ``F.layer_norm``, ``F.linear``, ``nn.TransformerEncoderLayer`` /
``nn.TransformerDecoderLayer`` in evaluation mode, and the twins of :mod:`labsupport.blocks` in training mode
under the same random seed, which pins where dropout goes. The typical mistakes of :data:`MISTAKES` are each the
exercise's reference *with that mistake* (a module class with the student's constructor, or a function for
``sublayer``), run on the same weights and inputs to recognise a wrong result. The same checks catch what no
table lists: an argument changed in place, the (output, weights) pair of attention not unpacked, masks that go
to the wrong attention, a dropout rate hard-coded, dropout applied in evaluation mode.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from labsupport import blocks as ref
from labsupport.attention import MultiHeadAttention, causal_mask, padding_mask, to_torch_mask
from labsupport.checks.core import (
    CheckFailed,
    Handle,
    Mistake,
    build,
    call,
    call_with,
    candidates,
    compare,
    describe_value,
    error_hints,
    method,
    passed,
    probe,
)
from labsupport.device import torch_threads

__all__ = ["MISTAKES", "CHECKS", "check_layer_norm", "check_feed_forward", "check_sublayer", "check_encoder_block",
           "check_decoder_block", "linear", "layer_norm", "FixedDropout", "Zero"]


def _gen(seed: int, case: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + case)


def _randn(seed: int, case: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed, case))


@contextlib.contextmanager
def _seeded(seed: int):
    """The global RNG seeded with ``seed`` inside the block, restored after it (the caller's state is kept)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------------------------------------------------
# objects the checks build where the student's code runs (module level, so that `build` can name them)
# ------------------------------------------------------------------------------------------------------------
def linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """An ``nn.Linear`` with exactly these weights (a sub-layer ``fn`` for the sublayer check)."""
    m = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        m.weight.copy_(weight)
        m.bias.copy_(bias)
    return m


def layer_norm(weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> nn.LayerNorm:
    """PyTorch's ``nn.LayerNorm`` with exactly these weights."""
    m = nn.LayerNorm(weight.shape[0], eps=eps)
    with torch.no_grad():
        m.weight.copy_(weight)
        m.bias.copy_(bias)
    return m


class FixedDropout(nn.Module):
    """A stand-in for dropout that is easy to spot: it always drops the same features and doubles the others."""

    def __init__(self, d: int, offset: int = 0):
        super().__init__()
        self.register_buffer("keep", ((torch.arange(d) + offset) % 3 != 1).float() * 2.0)

    def forward(self, x):
        return x * self.keep


class Zero(nn.Module):
    """A sub-layer (or a dropout) that outputs zeros."""

    def forward(self, x):
        return torch.zeros_like(x)


# ------------------------------------------------------------------------------------------------------------
# the exercises' references with switches for the typical mistakes (trusted code, positional constructors
# like the students' classes, so that each one can also stand in for a student's class in the tests)
# ------------------------------------------------------------------------------------------------------------
class _LayerNorm(nn.Module):
    unbiased, eps_mode, dim, affine, use_eps_argument = False, "inside", -1, True, True
    names, init = ("weight", "bias"), (1.0, 0.0)

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps if self.use_eps_argument else 1e-5
        setattr(self, self.names[0], nn.Parameter(torch.full((d_model,), self.init[0])))
        setattr(self, self.names[1], nn.Parameter(torch.full((d_model,), self.init[1])))

    def forward(self, x):
        w, b = getattr(self, self.names[0]), getattr(self, self.names[1])
        mean = x.mean(dim=self.dim, keepdim=True)
        var = x.var(dim=self.dim, keepdim=True, unbiased=self.unbiased)
        if self.eps_mode == "inside":
            y = (x - mean) / torch.sqrt(var + self.eps)
        elif self.eps_mode == "outside":
            y = (x - mean) / (torch.sqrt(var) + self.eps)
        else:
            y = (x - mean) / torch.sqrt(var)
        return y * w + b if self.affine else y


_ACT = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": ref.gelu_tanh, "none": lambda h: h}


class _FeedForward(nn.Module):
    activation_mode, dropout_at, act_after, fixed_p, names = "argument", "hidden", False, None, ("linear1", "linear2")

    def __init__(self, d_model, d_ff, dropout=0.0, activation="relu"):
        super().__init__()
        setattr(self, self.names[0], nn.Linear(d_model, d_ff))
        setattr(self, self.names[1], nn.Linear(d_ff, d_model))
        self.dropout = nn.Dropout(dropout if self.fixed_p is None else self.fixed_p)
        mode = self.activation_mode
        if mode == "gelu_tanh":  # the approximation where GELU was asked for
            mode = "gelu_tanh" if activation == "gelu" else "argument"
        elif mode == "swapped":
            mode = "gelu" if activation == "relu" else "relu"
        self.act = _ACT[activation if mode == "argument" else mode]

    def forward(self, x):
        l1, l2 = getattr(self, self.names[0]), getattr(self, self.names[1])
        if self.dropout_at == "before_activation":
            h = self.act(self.dropout(l1(x)))
        else:
            h = self.act(l1(x))
            if self.dropout_at == "hidden":
                h = self.dropout(h)
            elif self.dropout_at == "always":
                h = F.dropout(h, self.dropout.p)
        y = l2(h)
        if self.act_after:
            y = self.act(y)
        return self.dropout(y) if self.dropout_at == "output" else y


def _step(x, f, norm, drop, pre, residual=True):
    if pre:
        y = drop(f(norm(x)))
        return x + y if residual else y
    y = drop(f(x))
    return norm(x + y) if residual else norm(y)


def _masked(mask, mode):
    if mask is None or mode == "ignore":
        return None
    return ~mask if mode == "invert" else mask


class _EncoderBlock(nn.Module):
    placement, residual, order, norms, mask_mode, sublayer_dropout, fixed_p, attn_reads = (
        "argument", True, "attention first", ("norm1", "norm2"), "ok", True, None, "h")

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ff = ref.FeedForward(d_model, d_ff, dropout=dropout)
        self.norm1, self.norm2 = ref.LayerNorm(d_model), ref.LayerNorm(d_model)
        p = dropout if self.fixed_p is None else self.fixed_p
        self.dropout1, self.dropout2 = nn.Dropout(p), nn.Dropout(p)

    def forward(self, x, mask=None):
        pre = self.norm_first if self.placement == "argument" else not self.norm_first
        m = _masked(mask, self.mask_mode)
        x0 = x
        attend = lambda h: self.self_attn(*(3 * (h if self.attn_reads == "h" else x0,)), m)[0]  # noqa: E731
        d1, d2 = (self.dropout1, self.dropout2) if self.sublayer_dropout else (nn.Identity(), nn.Identity())
        n1, n2 = (getattr(self, n) for n in self.norms)
        subs = [(attend, n1, d1), (self.ff, n2, d2)]
        if self.order != "attention first":
            subs = [(self.ff, self.norm1, d1), (attend, self.norm2, d2)]
        for f, n, d in subs:
            x = _step(x, f, n, d, pre, self.residual)
        return x


class _DecoderBlock(nn.Module):
    placement, residual, cross_kv, self_mode, memory_mode, norm_memory, order, sublayer_dropout, fixed_p = (
        "argument", True, "memory", "ok", "ok", False, "self first", True, None)

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ff = ref.FeedForward(d_model, d_ff, dropout=dropout)
        self.norm1, self.norm2, self.norm3 = (ref.LayerNorm(d_model) for _ in range(3))
        p = dropout if self.fixed_p is None else self.fixed_p
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(p) for _ in range(3))

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        pre = self.norm_first if self.placement == "argument" else not self.norm_first
        sm, mm = _masked(self_mask, self.self_mode), _masked(memory_mask, self.memory_mode)
        attend = lambda h: self.self_attn(h, h, h, sm)[0]  # noqa: E731

        def look_up(h):
            if self.cross_kv == "x":
                return self.cross_attn(h, h, h)[0]
            kv = self.norm2(memory) if self.norm_memory else memory
            return self.cross_attn(h, kv, kv, mm)[0]

        drops = (self.dropout1, self.dropout2, self.dropout3) if self.sublayer_dropout else (nn.Identity(),) * 3
        subs = [(attend, self.norm1), (look_up, self.norm2), (self.ff, self.norm3)]
        if self.order != "self first":
            subs = [(look_up, self.norm1), (attend, self.norm2), (self.ff, self.norm3)]
        for (f, n), d in zip(subs, drops):
            x = _step(x, f, n, d, pre, self.residual)
        return x


def _variant(base: type, name: str, **switches) -> type:
    """``base`` with some switches set: the reference with one mistake, as a class of its own."""
    return type(base.__name__.lstrip("_"), (base,), {"__qualname__": f"{base.__name__}[{name}]", **switches})


# ------------------------------------------------------------------------------------------------------------
# the typical mistakes
# ------------------------------------------------------------------------------------------------------------
LN_NAMES = ("Name the parameters `weight` and `bias` (the names nn.LayerNorm uses): self.weight = "
            "nn.Parameter(torch.ones(d_model)) and self.bias = nn.Parameter(torch.zeros(d_model)).")
LN_INIT = ("`weight` must start at ones and `bias` at zeros (torch.ones(d_model), torch.zeros(d_model)), so that a "
           "fresh layer norm only standardises.")
LN_NO_EPS = ("For a row whose features are all equal (variance 0) the division by sqrt(var) divides by zero: "
             "add eps inside the square root, sqrt(var + eps).")
FF_NAMES = ("Name the layers `linear1` (nn.Linear(d_model, d_ff)) and `linear2` (nn.Linear(d_ff, d_model)), with "
            "their biases, as nn.TransformerEncoderLayer does, so that weights can be copied across.")
BLOCK_NAMES = ("Keep the attribute names of the given __init__ (self_attn, ff, norm1, norm2, ...): the check loads "
               "weights by these names, as copy_encoder_layer_weights does.")
EVAL_CONTEXT = ("Each sub-layer is sublayer(x, fn, norm, dropout, self.norm_first) with its own norm and dropout, "
                "and the attention reads the h that sublayer passes to its fn: queries, keys and values all h for "
                "self-attention, with the mask.")
TRAIN_CONTEXT = ("In training mode (same random seed for both) the block must drop exactly where "
                 "nn.TransformerEncoderLayer does: the attention weights (inside self_attn), the feed-forward's "
                 "hidden layer (inside ff), and each sub-layer's output, with self.dropout1, self.dropout2, ... "
                 "passed to sublayer. In evaluation mode the same block applies no dropout.")


def _sub(pre, post):
    return lambda x, fn, norm, dropout, norm_first: pre(x, fn, norm, dropout) if norm_first else post(
        x, fn, norm, dropout)


_PRE = lambda x, f, n, d: x + d(f(n(x)))  # noqa: E731
_POST = lambda x, f, n, d: n(x + d(f(x)))  # noqa: E731

MISTAKES: dict[str, list[Mistake]] = {
    "layer_norm": [
        Mistake("unbiased", "It uses the unbiased variance (dividing by D - 1). Layer norm divides by D: "
                            "x.var(dim=-1, keepdim=True, unbiased=False), or ((x - mean) ** 2).mean(-1, keepdim=True).",
                _variant(_LayerNorm, "unbiased", unbiased=True)),
        Mistake("sequence_axis", "It normalises over the sequence axis; layer norm normalises each position's "
                                 "features, the last axis (dim=-1).", _variant(_LayerNorm, "axis", dim=1)),
        Mistake("batch_axis", "It normalises over the batch axis; layer norm normalises each position's features, "
                              "the last axis (dim=-1).", _variant(_LayerNorm, "batch_axis", dim=0)),
        Mistake("no_affine", "weight and bias are not applied: multiply by self.weight and add self.bias at the end.",
                _variant(_LayerNorm, "no_affine", affine=False)),
        Mistake("eps_outside", "eps is added outside the square root, (x - mean) / (std + eps); nn.LayerNorm adds it "
                               "to the variance: (x - mean) / sqrt(var + eps).",
                _variant(_LayerNorm, "eps_outside", eps_mode="outside")),
        Mistake("eps_ignored", "It ignores the eps argument: store it in __init__ (self.eps = eps) and use self.eps "
                               "in forward.", _variant(_LayerNorm, "eps_ignored", use_eps_argument=False)),
        Mistake("no_eps", LN_NO_EPS, _variant(_LayerNorm, "no_eps", eps_mode="none")),
        Mistake("names", LN_NAMES, _variant(_LayerNorm, "names", names=("gamma", "beta"))),
        Mistake("init", LN_INIT, _variant(_LayerNorm, "init", init=(0.0, 0.0))),
    ],
    "feed_forward": [
        Mistake("no_activation", "The activation is missing. Without a nonlinearity between them, two linear layers "
                                 "are just one linear layer: apply the activation to the output of linear1.",
                _variant(_FeedForward, "no_activation", activation_mode="none")),
        Mistake("activation_after", "The activation is also applied after linear2; it belongs only between the two "
                                    "layers.", _variant(_FeedForward, "act_after", act_after=True)),
        Mistake("activation_ignored", "It ignores the activation argument: with activation='gelu' use F.gelu, with "
                                      "'relu' F.relu.", _variant(_FeedForward, "always_relu", activation_mode="relu")),
        Mistake("activations_swapped", "It uses the wrong activation: F.relu for activation='relu' (the default), "
                                       "F.gelu for activation='gelu'.",
                _variant(_FeedForward, "swapped", activation_mode="swapped")),
        Mistake("gelu_tanh", "It uses the tanh approximation of GELU; use the exact one, F.gelu(h) (as torch's "
                             "activation='gelu' does).",
                _variant(_FeedForward, "gelu_tanh", activation_mode="gelu_tanh")),
        Mistake("no_dropout", "In training mode it applies no dropout: apply self.dropout = nn.Dropout(dropout) to "
                              "the hidden activations, between the activation and linear2.",
                _variant(_FeedForward, "no_dropout", dropout_at="none")),
        Mistake("dropout_on_output", "Dropout is applied to the output; apply it to the hidden activations, between "
                                     "the activation and linear2 (the block adds its own dropout on the output).",
                _variant(_FeedForward, "output", dropout_at="output")),
        Mistake("dropout_before_activation", "Dropout comes before the activation; apply it to the activation's "
                                             "output: linear2(dropout(activation(linear1(x)))).",
                _variant(_FeedForward, "before", dropout_at="before_activation")),
        Mistake("dropout_in_eval", "It drops values in evaluation mode too: F.dropout(h, p) always drops unless you "
                                   "pass training=self.training; use the module self.dropout = nn.Dropout(dropout).",
                _variant(_FeedForward, "always", dropout_at="always")),
        Mistake("rate_hard_coded", "The dropout rate is hard-coded: use the `dropout` argument, "
                                   "nn.Dropout(dropout).", _variant(_FeedForward, "fixed_p", fixed_p=0.1)),
        Mistake("names", FF_NAMES, _variant(_FeedForward, "names", names=("fc1", "fc2"))),
    ],
    "sublayer": [
        Mistake("placement_swapped", "The two placements are swapped: norm_first=True is pre-norm, x + dropout("
                                     "fn(norm(x))); norm_first=False is post-norm, norm(x + dropout(fn(x))).",
                _sub(_POST, _PRE)),
        Mistake("post_no_residual", "The residual connection is missing in post-norm: add x to the sub-layer's "
                                    "output before normalising, norm(x + dropout(fn(x))).",
                _sub(_PRE, lambda x, f, n, d: n(d(f(x))))),
        Mistake("pre_no_residual", "The residual connection is missing in pre-norm: add x to the sub-layer's "
                                   "output, x + dropout(fn(norm(x))).", _sub(lambda x, f, n, d: d(f(n(x))), _POST)),
        Mistake("post_norm_of_output", "In post-norm it normalises the sub-layer's output and then adds x; post-norm "
                                       "normalises the sum: norm(x + dropout(fn(x))).",
                _sub(_PRE, lambda x, f, n, d: x + d(n(f(x))))),
        Mistake("post_norm_of_output_2", "In post-norm it normalises the sub-layer's output and then adds x; "
                                         "post-norm normalises the sum: norm(x + dropout(fn(x))).",
                _sub(_PRE, lambda x, f, n, d: x + n(d(f(x))))),
        Mistake("pre_norm_after", "In pre-norm the norm comes after the sub-layer; it comes before: "
                                  "x + dropout(fn(norm(x))).", _sub(lambda x, f, n, d: x + d(n(f(x))), _POST)),
        Mistake("pre_normalised_residual", "In pre-norm the residual carries norm(x); it must carry x itself, "
                                           "x + dropout(fn(norm(x))). That untouched path is what makes pre-norm "
                                           "stable.", _sub(lambda x, f, n, d: n(x) + d(f(n(x))), _POST)),
        Mistake("pre_no_norm", "In pre-norm the sub-layer reads x without the norm: x + dropout(fn(norm(x))).",
                _sub(lambda x, f, n, d: x + d(f(x)), _POST)),
        Mistake("no_dropout", "Dropout is not applied: post-norm norm(x + dropout(fn(x))), pre-norm "
                              "x + dropout(fn(norm(x))).",
                _sub(lambda x, f, n, d: x + f(n(x)), lambda x, f, n, d: n(x + f(x)))),
        Mistake("dropout_on_sum", "Dropout is applied to the whole sum, residual included; apply it to the "
                                  "sub-layer's output only.",
                _sub(lambda x, f, n, d: d(x + f(n(x))), lambda x, f, n, d: n(d(x + f(x))))),
    ],
    "encoder_block": [
        Mistake("placement", "The norm is in the wrong place for this norm_first: the block computes the other "
                             "variant. Pass self.norm_first to sublayer.",
                _variant(_EncoderBlock, "placement", placement="flipped")),
        Mistake("no_residual", "The residual connections are missing (use your sublayer function for both "
                               "sub-layers).", _variant(_EncoderBlock, "no_residual", residual=False)),
        Mistake("order", "The sub-layers are in the wrong order: self-attention first, then the feed-forward network.",
                _variant(_EncoderBlock, "order", order="ff first")),
        Mistake("same_norm", "Both sub-layers use norm1; the feed-forward sub-layer has its own norm2.",
                _variant(_EncoderBlock, "same_norm", norms=("norm1", "norm1"))),
        Mistake("norms_swapped", "The two norms are swapped: the self-attention sub-layer uses norm1, the "
                                 "feed-forward sub-layer norm2.",
                _variant(_EncoderBlock, "norms_swapped", norms=("norm2", "norm1"))),
        Mistake("mask_ignored", "The mask is ignored: pass it to self.self_attn(h, h, h, mask).",
                _variant(_EncoderBlock, "mask_ignored", mask_mode="ignore")),
        Mistake("mask_inverted", "The mask is inverted: our masks are True where attention is allowed; pass it as "
                                 "it is.", _variant(_EncoderBlock, "mask_inverted", mask_mode="invert")),
        Mistake("attention_reads_x", "The self-attention reads the block's input x instead of what the sub-layer "
                                     "passes to it (in pre-norm that is norm1(x)): use the lambda's own argument, "
                                     "lambda h: self.self_attn(h, h, h, mask)[0].",
                _variant(_EncoderBlock, "reads_x", attn_reads="x")),
        Mistake("no_dropout", "In training mode the sub-layers' outputs are not dropped: pass self.dropout1 and "
                              "self.dropout2 to sublayer.",
                _variant(_EncoderBlock, "no_dropout", sublayer_dropout=False)),
        Mistake("rate_hard_coded", "The dropout rate of dropout1/dropout2 is hard-coded: use the `dropout` "
                                   "argument, nn.Dropout(dropout).", _variant(_EncoderBlock, "fixed_p", fixed_p=0.1)),
    ],
    "decoder_block": [
        Mistake("placement", "The norm is in the wrong place for this norm_first: the block computes the other "
                             "variant. Pass self.norm_first to sublayer.",
                _variant(_DecoderBlock, "placement", placement="flipped")),
        Mistake("no_residual", "The residual connections are missing (use your sublayer function for all three "
                               "sub-layers).", _variant(_DecoderBlock, "no_residual", residual=False)),
        Mistake("cross_on_x", "The cross-attention takes its keys and values from the decoder's own states; they "
                              "must come from the encoder output: self.cross_attn(h, memory, memory, memory_mask).",
                _variant(_DecoderBlock, "cross_on_x", cross_kv="x")),
        Mistake("self_mask_ignored", "self_mask is ignored: the self-attention must use it (a target position may "
                                     "not see later target positions).",
                _variant(_DecoderBlock, "self_ignored", self_mode="ignore")),
        Mistake("memory_mask_ignored", "memory_mask is ignored: the cross-attention must use it, so that no query "
                                       "attends to padded source positions.",
                _variant(_DecoderBlock, "memory_ignored", memory_mode="ignore")),
        Mistake("self_mask_inverted", "self_mask is inverted: our masks are True where attention is allowed.",
                _variant(_DecoderBlock, "self_inverted", self_mode="invert")),
        Mistake("memory_mask_inverted", "memory_mask is inverted: our masks are True where attention is allowed.",
                _variant(_DecoderBlock, "memory_inverted", memory_mode="invert")),
        Mistake("memory_normalised", "The memory is normalised with norm2; only the decoder's own states go through "
                                     "the norm (the encoder normalised its output already).",
                _variant(_DecoderBlock, "norm_memory", norm_memory=True)),
        Mistake("order", "The sub-layers are in the wrong order: self-attention, then cross-attention, then the "
                         "feed-forward network.", _variant(_DecoderBlock, "order", order="cross first")),
        Mistake("no_dropout", "In training mode the sub-layers' outputs are not dropped: pass self.dropout1, "
                              "self.dropout2 and self.dropout3 to sublayer.",
                _variant(_DecoderBlock, "no_dropout", sublayer_dropout=False)),
        Mistake("rate_hard_coded", "The dropout rate of dropout1..dropout3 is hard-coded: use the `dropout` "
                                   "argument, nn.Dropout(dropout).", _variant(_DecoderBlock, "fixed_p", fixed_p=0.1)),
    ],
}

_SHAPES_HINT = ("A shape that does not fit: print the shapes going into each sub-layer. The output of every "
                "sub-layer must have the shape of x, (B, L, D).")
error_hints("LayerNorm", [
    (r"must match the size of tensor b", "The mean or the variance lost the reduced axis, so it no longer lines up "
                                         "with x: pass keepdim=True to mean and var."),
])
error_hints("EncoderBlock.forward", [
    (r"unsupported operand type\(s\) for [+*]: 'Tensor' and 'tuple'|'tuple' object has no attribute",
     "A tuple reached a tensor operation: self.self_attn(...) returns (output, weights); take the output, "
     "self.self_attn(h, h, h, mask)[0]."),
])
error_hints("DecoderBlock.forward", [
    (r"unsupported operand type\(s\) for [+*]: 'Tensor' and 'tuple'|'tuple' object has no attribute",
     "A tuple reached a tensor operation: attention returns (output, weights); take the output, [0]."),
    (r"must match the size of tensor b|shapes cannot be multiplied|Expected size|mismatch",
     "The target has 5 positions and the source 7 here: the self-attention mask is (5, 5), the memory mask "
     "(2, 1, 1, 7). Check that each mask goes to its own attention and that the cross-attention's queries come "
     "from the decoder (h) and its keys and values from memory: self.cross_attn(h, memory, memory, memory_mask)."),
])
for _name in ("EncoderBlock.forward", "FeedForward", "sublayer"):
    error_hints(_name, [(r"must match the size of tensor b|shapes cannot be multiplied", _SHAPES_HINT)])


# ------------------------------------------------------------------------------------------------------------
# helpers for module exercises
# ------------------------------------------------------------------------------------------------------------
def _module(got, what: str) -> Handle:
    if not (isinstance(got, Handle) and got.is_module):
        raise CheckFailed(f"{what} should build an nn.Module, but it gave a {describe_value(got)}.")
    return got


def _expect_parameters(what: str, got: dict, want: dict[str, tuple], advice: str) -> None:
    """The student's module has exactly the parameters ``want`` (name -> shape)."""
    missing, extra = [n for n in want if n not in got], [n for n in got if n not in want]
    if missing or extra:
        parts = ([f"missing {', '.join(f'`{n}`' for n in missing)}"] if missing else []) + (
            [f"unexpected {', '.join(f'`{n}`' for n in extra)}"] if extra else [])
        raise CheckFailed(f"{what} does not have the expected parameters ({'; '.join(parts)}). {advice}")
    for n, shape in want.items():
        if tuple(got[n].shape) != tuple(shape):
            raise CheckFailed(f"{what}: the parameter `{n}` has shape {tuple(got[n].shape)}; expected "
                              f"{tuple(shape)}. {advice}")


def _load(m: Handle, name: str, state: dict) -> None:
    method(m, "load_state_dict", f"{name}.load_state_dict", state, strict=False)


def _module_hints(mistakes, args: tuple, kwargs: dict, state: dict, inputs: tuple, *, train: bool = False,
                  seed: int | None = None) -> list[tuple]:
    """``(output, message)`` of each mistaken module class, built with ``args``/``kwargs``, loaded with ``state``,
    run on ``inputs`` (in training mode under ``seed`` if ``train``)."""
    out = []
    for m in mistakes:
        try:
            with _seeded(0):
                mod = m.fn(*args, **kwargs)
            mod.load_state_dict(state)
            mod.train(train)
            with torch.no_grad(), _seeded(0 if seed is None else seed):
                out.append((mod(*inputs), m.message))
        except Exception:  # noqa: BLE001 - a mistake that cannot run on this input gives no hint
            continue
    return out


def _compare(what: str, got, want, hints, context: str = "", atol: float = 1e-5) -> None:
    """:func:`compare`; a failure without a recognised mistake gets ``context`` added."""
    try:
        compare(what, got, want, atol=atol, hints=hints)
    except CheckFailed as err:
        if not context or "is not right yet" in err.message:
            raise
        raise CheckFailed(f"{err.message}\n{context}") from None


# ------------------------------------------------------------------------------------------------------------
# Exercise 1: LayerNorm
# ------------------------------------------------------------------------------------------------------------
@torch_threads(1)
def check_layer_norm(LayerNorm, *, seed: int = 0) -> None:
    """Check ``LayerNorm(d_model, eps=1e-5)`` against ``F.layer_norm`` with the same (random) weight and bias:
    ordinary inputs, constant rows (variance 0), a tiny variance where eps matters, a non-default eps."""
    mistakes = MISTAKES["layer_norm"]
    D = 8
    m = _module(call(LayerNorm, "LayerNorm", D), f"LayerNorm({D})")
    params = probe(m, "parameters")
    _expect_parameters(f"LayerNorm({D})", params, {"weight": (D,), "bias": (D,)}, LN_NAMES)
    if not (torch.all(params["weight"] == 1) and torch.all(params["bias"] == 0)):
        shown = {k: [round(v, 3) for v in params[k].tolist()] for k in ("weight", "bias")}
        raise CheckFailed(f"A fresh LayerNorm({D}) has weight {shown['weight']} and bias {shown['bias']}. {LN_INIT}")
    w, b = 1 + 0.5 * _randn(seed, 1, D), 0.5 * _randn(seed, 2, D)
    state = {"weight": w, "bias": b}
    _load(m, "LayerNorm", state)

    def case(what, x, eps=1e-5, atol=1e-5, module=m, args=(D,), kwargs=None):
        hints = _module_hints(mistakes, args, kwargs or {}, state, (x,))
        compare(what, method(module, "forward", "LayerNorm", x), F.layer_norm(x, (D,), w, b, eps), atol=atol,
                hints=hints)

    case("LayerNorm(8)(x) for x of shape (2, 5, 8), with random weight and bias", 3 * _randn(seed, 3, 2, 5, D) + 1)
    flat = torch.full((2, 3, D), 1.0) * (1 + _randn(seed, 4, 2, 3, 1)).round()
    got = method(m, "forward", "LayerNorm", flat)
    if isinstance(got, torch.Tensor) and got.is_floating_point() and not torch.isfinite(got).all():
        raise CheckFailed(f"LayerNorm(8) on rows whose features are all equal gives NaN or inf. {LN_NO_EPS}")
    case("LayerNorm(8) on rows whose features are all equal (variance 0)", flat)
    case("LayerNorm(8)(x) for x with a tiny variance (about 1e-5, where eps matters)", 3e-3 * _randn(seed, 5, 2, 3, D),
         atol=1e-4)
    m2 = _module(call(LayerNorm, "LayerNorm", D, 0.1), f"LayerNorm({D}, 0.1)")
    _load(m2, "LayerNorm", state)
    case("LayerNorm(8, 0.1)(x) for x of variance about 1 (eps is an argument)", _randn(seed, 6, 2, 4, D),
         eps=0.1, module=m2, args=(D, 0.1))
    passed("LayerNorm", "equal to nn.LayerNorm")


# ------------------------------------------------------------------------------------------------------------
# Exercise 2: FeedForward
# ------------------------------------------------------------------------------------------------------------
def _ff_state(seed: int, D: int, Dff: int) -> dict:
    return {"linear1.weight": _randn(seed, 11, Dff, D) / D ** 0.5, "linear1.bias": 0.5 * _randn(seed, 12, Dff),
            "linear2.weight": _randn(seed, 13, D, Dff) / Dff ** 0.5, "linear2.bias": 0.5 * _randn(seed, 14, D)}


def _ff(state: dict, x, act, p: float = 0.0) -> torch.Tensor:
    h = act(F.linear(x, state["linear1.weight"], state["linear1.bias"]))
    return F.linear(F.dropout(h, p, training=p > 0), state["linear2.weight"], state["linear2.bias"])


@torch_threads(1)
def check_feed_forward(FeedForward, *, seed: int = 0) -> None:
    """Check ``FeedForward(d_model, d_ff, dropout=0.0, activation="relu")`` = ``linear2(dropout(act(linear1(x))))``:
    the layers' names and shapes, ReLU and exact GELU in evaluation mode, and the dropout's place and rate in
    training mode under a fixed seed."""
    mistakes = MISTAKES["feed_forward"]
    D, Dff, p = 8, 24, 0.3
    state = _ff_state(seed, D, Dff)
    x = _randn(seed, 15, 2, 5, D)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for activation, act in (("relu", F.relu), ("gelu", F.gelu)):
        extra = f", activation={activation!r}" if activation != "relu" else ""
        shown = f"FeedForward({D}, {Dff}, dropout={p}{extra})"
        kwargs = {"dropout": p} | ({"activation": activation} if activation != "relu" else {})
        m = _module(call(FeedForward, "FeedForward", D, Dff, **kwargs), shown)
        _expect_parameters(shown, probe(m, "parameters"), shapes, FF_NAMES)
        _load(m, "FeedForward", state)
        probe(m, "set_training", False)
        s = 900 + seed  # evaluation mode uses no randomness: with a seed, a dropout that still drops is recognised
        compare(f"{shown} in evaluation mode, x of shape (2, 5, {D})", method(m, "forward", "FeedForward", x, seed=s),
                _ff(state, x, act), atol=1e-5, hints=_module_hints(mistakes, (D, Dff), kwargs, state, (x,), seed=s))
    # the same module (GELU) in training mode: dropout on the hidden layer, rate p, same seed as the reference
    probe(m, "set_training", True)
    s = 1000 + seed
    got = method(m, "forward", "FeedForward", x, seed=s)
    with _seeded(s):
        want = _ff(state, x, F.gelu, p)
    _compare(
        f"{shown} in training mode (fixed seed)", got, want,
        _module_hints(mistakes, (D, Dff), kwargs, state, (x,), train=True, seed=s),
        "In training mode, dropout (rate `dropout`) goes on the hidden activations only: "
        "linear2(self.dropout(activation(linear1(x)))).")
    passed("FeedForward")


# ------------------------------------------------------------------------------------------------------------
# Exercise 3: the residual sub-layer connection
# ------------------------------------------------------------------------------------------------------------
@torch_threads(1)
def check_sublayer(sublayer, *, seed: int = 0) -> None:
    """Check ``sublayer(x, fn, norm, dropout, norm_first)``: post-norm ``norm(x + dropout(fn(x)))``, pre-norm
    ``x + dropout(fn(norm(x)))``, with a dropout that is easy to spot and with a real one under a fixed seed."""
    mistakes = MISTAKES["sublayer"]
    D = 8
    fw, fb = _randn(seed, 21, D, D) / D ** 0.5, 0.5 * _randn(seed, 22, D)
    nw, nb = 1 + 0.5 * _randn(seed, 23, D), 0.5 * _randn(seed, 24, D)
    offset = seed % 3
    fn, norm, drop = linear(fw, fb), layer_norm(nw, nb), FixedDropout(D, offset)
    fn_h, norm_h, drop_h = (build(sublayer, linear, fw, fb), build(sublayer, layer_norm, nw, nb),
                            build(sublayer, FixedDropout, D, offset))
    x = 2 * _randn(seed, 25, 2, 4, D)
    with torch.no_grad():
        for nf, kind in ((False, "post-norm"), (True, "pre-norm")):
            what = f"sublayer(x, fn, norm, dropout, norm_first={nf}) ({kind})"
            compare(what, call(sublayer, "sublayer", x, fn_h, norm_h, drop_h, nf), ref.sublayer(x, fn, norm, drop, nf),
                    atol=1e-5, hints=candidates(mistakes, x, fn, norm, drop, nf))
        p, s = 0.3, 2000 + seed
        real_h = build(sublayer, nn.Dropout, p)
        for nf, kind in ((False, "post-norm"), (True, "pre-norm")):
            got = call_with(sublayer, "sublayer", (x, fn_h, norm_h, real_h, nf), seed=s)
            with _seeded(s):
                want = ref.sublayer(x, fn, norm, nn.Dropout(p), nf)
            hints = []
            for mistake in mistakes:
                with _seeded(s):
                    hints += candidates([mistake], x, fn, norm, nn.Dropout(p), nf)
            compare(f"sublayer(..., dropout=nn.Dropout({p}) in training mode, norm_first={nf}) ({kind}, fixed seed)",
                    got, want, atol=1e-5, hints=hints)
    passed("sublayer", "post-norm and pre-norm")


# ------------------------------------------------------------------------------------------------------------
# Exercises 4 and 5: the blocks
# ------------------------------------------------------------------------------------------------------------
def _perturb_norms(layer: nn.Module, seed: int, n: int) -> None:
    """Layer norms with non-trivial weights, so that their placement shows."""
    D = layer.norm1.weight.shape[0]
    with torch.no_grad():
        for i in range(1, n + 1):
            norm = getattr(layer, f"norm{i}")
            norm.weight.copy_(1 + 0.3 * _randn(seed, 40 + i, D))
            norm.bias.copy_(0.3 * _randn(seed, 50 + i, D))


def _block_setup(Block, name: str, D: int, H: int, Dff: int, p: float, nf: bool, twin):
    """The student's block with the weights of the trusted ``twin``, in evaluation mode."""
    state = twin.state_dict()
    blk = _module(call(Block, name, D, H, Dff, dropout=p, norm_first=nf),
                  f"{name}({D}, {H}, {Dff}, dropout={p}, norm_first={nf})")
    _expect_parameters(name, probe(blk, "parameters"), {k: tuple(v.shape) for k, v in state.items()},
                       BLOCK_NAMES.replace("norm1, norm2", "cross_attn, norm1..norm3") if name == "DecoderBlock"
                       else BLOCK_NAMES)
    _load(blk, name, state)
    probe(blk, "set_training", False)
    return blk, state


@torch_threads(1)
def check_encoder_block(EncoderBlock, *, seed: int = 0) -> None:
    """Check ``EncoderBlock(d_model, num_heads, d_ff, dropout, norm_first)`` against ``nn.TransformerEncoderLayer``
    with the same weights (evaluation mode; padding, causal and no mask), then in training mode against the
    library's twin under the same seed (dropout placement and rate)."""
    mistakes = MISTAKES["encoder_block"]
    D, H, Dff, B, L, p = 16, 4, 32, 2, 6, 0.2
    x = _randn(seed, 31, B, L, D)
    pad = padding_mask(torch.tensor([L, 3 + seed % 3]), L)
    causal = causal_mask(L)
    for nf in (False, True):
        kind = "pre-norm" if nf else "post-norm"
        with _seeded(60 + 2 * seed + nf):
            layer = nn.TransformerEncoderLayer(D, H, Dff, dropout=p, batch_first=True, norm_first=nf).eval()
            twin = ref.EncoderBlock(d_model=D, num_heads=H, d_ff=Dff, dropout=p, norm_first=nf)
        _perturb_norms(layer, seed + nf, 2)
        twin.load_from_torch(layer)
        blk, state = _block_setup(EncoderBlock, "EncoderBlock", D, H, Dff, p, nf, twin)
        for shown, mask, kw in (("a padding mask (B, 1, 1, L)", pad,
                                 {"src_key_padding_mask": to_torch_mask(pad[:, 0, 0])}),
                                ("a causal mask (L, L)", causal, {"src_mask": to_torch_mask(causal)}),
                                ("no mask", None, {})):
            args = (x,) if mask is None else (x, mask)
            with torch.no_grad():
                want = layer(x, **kw)
            s = 3100 + seed
            _compare(f"EncoderBlock(norm_first={nf}) ({kind}) in evaluation mode with {shown}, x of shape {(B, L, D)}",
                     method(blk, "forward", "EncoderBlock.forward", *args, seed=s), want,
                     _module_hints(mistakes, (D, H, Dff), {"dropout": p, "norm_first": nf}, state, args, seed=s),
                     EVAL_CONTEXT)
        probe(blk, "set_training", True)
        s = 3000 + 2 * seed + nf
        got = method(blk, "forward", "EncoderBlock.forward", x, pad, seed=s)
        twin.train()
        with torch.no_grad(), _seeded(s):
            want = twin(x, pad)
        _compare(f"EncoderBlock(norm_first={nf}, dropout={p}) ({kind}) in training mode with a padding mask (fixed "
                 "seed)", got, want, _module_hints(mistakes, (D, H, Dff), {"dropout": p, "norm_first": nf}, state,
                                                   (x, pad), train=True, seed=s), TRAIN_CONTEXT)
    passed("EncoderBlock", "equals PyTorch's layer, post- and pre-norm")


@torch_threads(1)
def check_decoder_block(DecoderBlock, *, seed: int = 0) -> None:
    """Check ``DecoderBlock(d_model, num_heads, d_ff, dropout, norm_first)`` against ``nn.TransformerDecoderLayer``
    with the same weights (evaluation mode; target 5 and source 7 positions, causal and padding masks, no masks),
    then in training mode against the library's twin under the same seed."""
    mistakes = MISTAKES["decoder_block"]
    D, H, Dff, B, Lt, Ls, p = 16, 4, 32, 2, 5, 7, 0.2
    x, mem = _randn(seed, 32, B, Lt, D), _randn(seed, 33, B, Ls, D)
    sm = causal_mask(Lt)
    mm = padding_mask(torch.tensor([Ls, 2 + seed % 4]), Ls)
    tmasks = {"tgt_mask": to_torch_mask(sm), "memory_key_padding_mask": to_torch_mask(mm[:, 0, 0])}
    for nf in (False, True):
        kind = "pre-norm" if nf else "post-norm"
        with _seeded(70 + 2 * seed + nf):
            layer = nn.TransformerDecoderLayer(D, H, Dff, dropout=p, batch_first=True, norm_first=nf).eval()
            twin = ref.DecoderBlock(d_model=D, num_heads=H, d_ff=Dff, dropout=p, norm_first=nf)
        _perturb_norms(layer, seed + nf, 3)
        twin.load_from_torch(layer)
        blk, state = _block_setup(DecoderBlock, "DecoderBlock", D, H, Dff, p, nf, twin)
        for shown, args, kw in (("a causal self_mask (5, 5) and a padding memory_mask (2, 1, 1, 7)", (x, mem, sm, mm),
                                 tmasks), ("no masks", (x, mem), {})):
            with torch.no_grad():
                want = layer(x, mem, **kw)
            s = 4100 + seed
            _compare(f"DecoderBlock(norm_first={nf}) ({kind}) in evaluation mode with {shown}, x {(B, Lt, D)}, memory "
                     f"{(B, Ls, D)}", method(blk, "forward", "DecoderBlock.forward", *args, seed=s), want,
                     _module_hints(mistakes, (D, H, Dff), {"dropout": p, "norm_first": nf}, state, args, seed=s),
                     EVAL_CONTEXT.replace("self-attention, with the mask", "self-attention with self_mask; queries h, "
                                          "keys and values memory for cross-attention with memory_mask"))
        probe(blk, "set_training", True)
        s = 4000 + 2 * seed + nf
        got = method(blk, "forward", "DecoderBlock.forward", x, mem, sm, mm, seed=s)
        twin.train()
        with torch.no_grad(), _seeded(s):
            want = twin(x, mem, sm, mm)
        _compare(
            f"DecoderBlock(norm_first={nf}, dropout={p}) ({kind}) in training mode (fixed seed)", got, want,
            _module_hints(mistakes, (D, H, Dff), {"dropout": p, "norm_first": nf}, state, (x, mem, sm, mm),
                          train=True, seed=s),
            TRAIN_CONTEXT.replace("nn.TransformerEncoderLayer", "nn.TransformerDecoderLayer").replace(
                "(inside self_attn)", "(inside self_attn and cross_attn)"))
    passed("DecoderBlock", "equals PyTorch's layer, post- and pre-norm")


#: check name -> check, the keys of :data:`MISTAKES`
CHECKS = {"layer_norm": check_layer_norm, "feed_forward": check_feed_forward, "sublayer": check_sublayer,
          "encoder_block": check_encoder_block, "decoder_block": check_decoder_block}
