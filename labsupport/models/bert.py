"""BERT (Devlin et al., 2019): a Transformer *encoder* pretrained by filling in masked words: Lab 7's model.

Data flow (``B`` batch, ``L`` length, ``D`` model width, ``V`` vocabulary, ``C`` classes)::

    tokens (B, L), segments (B, L)
      --token + segment + learned position embeddings, LayerNorm, dropout-->    (B, L, D)
      --N post-norm encoder blocks (GELU), padding mask-->                       hidden (B, L, D)
      --MLM head: dense, GELU, LayerNorm, tied output matrix + bias-->           logits (B, L, V)   pretraining
      --pooler: tanh(dense(hidden[:, 0])) on the [CLS] position, dropout, linear--> logits (B, C)   fine-tuning

Every token attends to every other (no causal mask): each output position sees the whole sentence, left *and*
right. That is what makes BERT a good reader and a poor writer: it cannot generate left to right, but its hidden
states summarise a word in its full context.

**Masked-language-model pretraining** (:func:`mask_tokens`). Pick 15% of the ordinary (non-special) tokens; of
those, replace 80% by ``[MASK]``, 10% by a random ordinary token and leave 10% unchanged; train the model to
predict the original token at the picked positions only (label ``-100``, :data:`IGNORE_INDEX`, elsewhere, which
``F.cross_entropy`` skips). The random and unchanged 20% keep the model from learning that only ``[MASK]``
positions matter: it has to build a good representation of *every* token, since any of them may be a target.

**Fine-tuning.** The same encoder, a fresh classifier on the pooled first position (the ``[CLS]`` token, which our
data puts at position 0), all weights trained on the labelled task with a small learning rate.

The course's tokenizer (:mod:`labsupport.data.tokenizers`) has no ``[CLS]``/``[SEP]``: Lab 7 uses ``<bos>`` in
the role of ``[CLS]`` and ``<eos>`` in the role of ``[SEP]``; the model only needs to know the padding id.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labsupport.attention import key_padding_mask
from labsupport.blocks import Encoder, LayerNorm
from labsupport.positional import LearnedPositionalEncoding

__all__ = ["IGNORE_INDEX", "BERT", "BertEmbeddings", "MLMHead", "mask_tokens", "mlm_loss", "mlm_step",
           "classify_step", "accuracy"]

#: The label of the positions that do not count in the masked-LM loss (``F.cross_entropy``'s default ``ignore_index``).
IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------------------------
# The masked-language-model objective
# ----------------------------------------------------------------------------------------------------------------
def mask_tokens(tokens: torch.Tensor, mask_id: int, vocab_size: int, special_ids=(0, 1, 2, 3, 4),
                mask_prob: float = 0.15, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: returns ``(inputs, labels)``, both ``(B, L)`` like ``tokens`` (which is not modified).

    Each position whose token is not in ``special_ids`` (padding, ``[CLS]``, ``[SEP]``, ...) is *picked* with
    probability ``mask_prob``. At a picked position ``labels`` holds the original token and ``inputs`` holds
    ``[MASK]`` (``mask_id``) with probability 0.8, a random ordinary token (uniform over the ids that are not
    special) with probability 0.1, the original token with probability 0.1. Everywhere else ``labels`` is
    :data:`IGNORE_INDEX` and ``inputs`` is the original token. Random numbers come from ``generator`` (on the
    CPU, so the same seed gives the same masks on every device).
    """
    special = torch.zeros_like(tokens, dtype=torch.bool)
    for s in special_ids:
        special |= tokens == s
    shape = tokens.shape
    picked = (torch.rand(shape, generator=generator).to(tokens.device) < mask_prob) & ~special
    action = torch.rand(shape, generator=generator).to(tokens.device)  # < 0.8: [MASK], < 0.9: random, else keep
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)], device=tokens.device)
    random_ids = ordinary[torch.randint(len(ordinary), shape, generator=generator).to(tokens.device)]

    labels = torch.where(picked, tokens, torch.full_like(tokens, IGNORE_INDEX))
    inputs = torch.where(picked & (action < 0.8), torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(picked & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-LM loss and accuracy over the picked positions only: ``(loss, accuracy)``, both scalars.

    ``logits (B, L, V)`` with ``labels (B, L)``, or already gathered ``logits (N, V)`` with ``labels (N,)``;
    positions labelled :data:`IGNORE_INDEX` count in neither the mean loss nor the accuracy.
    """
    V = logits.shape[-1]
    logits, labels = logits.reshape(-1, V), labels.reshape(-1)
    keep = labels != IGNORE_INDEX
    loss = F.cross_entropy(logits[keep], labels[keep])
    acc = (logits[keep].argmax(-1) == labels[keep]).float().mean()
    return loss, acc


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------
class BertEmbeddings(nn.Module):
    """``LayerNorm(token_emb[tokens] + segment_emb[segments] + position_emb[0..L-1])``, then dropout: ``(B, L, D)``.

    ``segments`` (sentence A = 0, sentence B = 1) defaults to all zeros. Attribute names: ``token``, ``segment``,
    ``position`` (a :class:`~labsupport.positional.LearnedPositionalEncoding`), ``norm``, ``dropout``.
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int, num_segments: int = 2, dropout: float = 0.1,
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.segment = nn.Embedding(num_segments, d_model)
        self.position = LearnedPositionalEncoding(max_len, d_model)
        self.norm = LayerNorm(d_model, layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        if segments is None:
            segments = torch.zeros_like(tokens)
        x = self.position(self.token(tokens) + self.segment(segments))
        return self.dropout(self.norm(x))


class MLMHead(nn.Module):
    """``(..., D) -> (..., V)``: ``LayerNorm(GELU(dense(h))) @ E^T + bias`` with ``E`` the token embedding matrix
    (tied: the same ``(V, D)`` parameter reads words in and writes them out)."""

    def __init__(self, d_model: int, embedding: nn.Embedding, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.norm = LayerNorm(d_model, layer_norm_eps)
        self.embedding = embedding  # shared, counted once by count_parameters
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(h))) @ self.embedding.weight.T + self.bias


class BERT(nn.Module):
    """The BERT encoder with both heads.

    * ``encode(tokens, segments=None, mask=None) -> hidden (B, L, D)``; ``mask`` defaults to the padding mask of
      ``pad_id`` (``(B, 1, 1, L)``, ``True`` = real token), so padded positions are never attended to.
    * ``forward(tokens, segments=None) -> MLM logits (B, L, V)``;
      ``mlm_logits(hidden, picked)`` computes them only at the ``picked`` positions: ``(N, V)`` (cheaper: the
      output layer is the largest matrix of a small model).
    * ``pool(hidden) -> tanh(pooler(hidden[:, 0])) (B, D)``, ``classify(tokens, segments=None) -> (B, num_classes)``.

    Post-norm blocks with GELU and ``layer_norm_eps=1e-12``, as the original. Initialisation as BERT's: normal(0,
    0.02) for weights and embeddings, zero biases, LayerNorms at (1, 0).
    """

    def __init__(self, vocab_size: int, max_len: int = 128, d_model: int = 128, num_heads: int = 4,
                 num_layers: int = 2, d_ff: int | None = None, dropout: float = 0.1, num_segments: int = 2,
                 num_classes: int = 2, pad_id: int = 0, layer_norm_eps: float = 1e-12):
        super().__init__()
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.vocab_size, self.max_len, self.d_model, self.pad_id = vocab_size, max_len, d_model, pad_id
        self.num_classes = num_classes
        self.embeddings = BertEmbeddings(vocab_size, max_len, d_model, num_segments, dropout, layer_norm_eps)
        self.encoder = Encoder(num_layers, d_model, num_heads, d_ff, dropout, activation="gelu", norm_first=False,
                               layer_norm_eps=layer_norm_eps, final_norm=False)
        self.pooler = nn.Linear(d_model, d_model)
        self.mlm_head = MLMHead(d_model, self.embeddings.token, layer_norm_eps)
        self.classifier_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(p, mean=0.0, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def reset_classifier(self, num_classes: int | None = None) -> None:
        """A fresh classifier (new weights, optionally a new number of classes), keeping everything else."""
        self.num_classes = num_classes or self.num_classes
        dev = self.classifier.weight.device
        self.classifier = nn.Linear(self.d_model, self.num_classes, device=dev)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def padding_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 1, L)`` boolean, ``True`` at real tokens (keys that may be attended to)."""
        return key_padding_mask(tokens, self.pad_id)

    def encode(self, tokens: torch.Tensor, segments: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len={self.max_len}")
        mask = self.padding_mask(tokens) if mask is None else mask
        return self.encoder(self.embeddings(tokens, segments), mask)

    def mlm_logits(self, hidden: torch.Tensor, picked: torch.Tensor | None = None) -> torch.Tensor:
        """MLM logits ``(B, L, V)``, or ``(N, V)`` at the ``N`` positions where the boolean ``picked`` is True."""
        return self.mlm_head(hidden if picked is None else hidden[picked])

    def forward(self, tokens: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlm_logits(self.encode(tokens, segments))

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The sequence summary BERT classifies: ``tanh(pooler(hidden[:, 0]))``, the ``[CLS]`` position."""
        return torch.tanh(self.pooler(hidden[:, 0]))

    def classify(self, tokens: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` from the pooled ``[CLS]`` position."""
        return self.classifier(self.classifier_dropout(self.pool(self.encode(tokens, segments))))

    def encoder_parameters(self) -> int:
        """Parameters of the embeddings, the encoder stack and the pooler: what published BERT sizes count."""
        parts = (self.embeddings, self.encoder, self.pooler)
        return sum(p.numel() for m in parts for p in m.parameters())

    @classmethod
    def bert_base(cls, **overrides) -> "BERT":
        """BERT-base (uncased): 30,522 WordPiece tokens, 512 positions, 2 segments, 12 layers, 12 heads,
        ``d_model=768``, ``d_ff=3072``.

        Embeddings + encoder + pooler (:meth:`encoder_parameters`) come to **109,482,240**, exactly the size of
        the released ``bert-base-uncased`` checkpoint's ``BertModel``:

        * embeddings ``(30522 + 512 + 2) * 768`` + LayerNorm ``2 * 768`` = 23,837,184;
        * each of 12 layers: attention ``4 * (768^2 + 768)`` = 2,362,368, feed-forward ``2 * 768 * 3072 + 3072 +
          768`` = 4,722,432, two LayerNorms 3,072: 7,087,872, so 85,054,464 for the stack;
        * pooler ``768^2 + 768`` = 590,592.

        ``count_parameters`` of the whole module is larger by the heads: the MLM head's dense layer and LayerNorm
        (592,128) and its output bias (30,522; the output *matrix* is the tied token embedding, counted once),
        plus the classifier ``768 * C + C`` (1,538 for the default ``C = 2``): 110,106,428 in all. The released
        ``BertForPreTraining`` has a next-sentence head of the same shape as our 2-class classifier.
        """
        cfg = dict(vocab_size=30522, max_len=512, d_model=768, num_heads=12, num_layers=12, d_ff=3072, dropout=0.1,
                   num_segments=2, num_classes=2)
        cfg.update(overrides)
        return cls(**cfg)


# ----------------------------------------------------------------------------------------------------------------
# Step functions for labsupport.training.train
# ----------------------------------------------------------------------------------------------------------------
def mlm_step(model: BERT, tokens: torch.Tensor, mask_id: int, special_ids, generator=None,
             mask_prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """One masked-LM step on a batch of token ids ``(B, L)``: mask, encode, predict the picked positions only.
    Returns ``(loss, accuracy)`` on the picked positions."""
    inputs, labels = mask_tokens(tokens, mask_id, model.vocab_size, special_ids, mask_prob, generator)
    picked = labels != IGNORE_INDEX
    logits = model.mlm_logits(model.encode(inputs), picked)  # (N, V)
    return mlm_loss(logits, labels[picked])


def classify_step(model: BERT, batch) -> torch.Tensor:
    """Cross-entropy of the classifier on a batch ``(tokens (B, L), labels (B,))``."""
    tokens, labels = batch
    return F.cross_entropy(model.classify(tokens), labels)


@torch.no_grad()
def accuracy(model: BERT, tokens: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Classification accuracy of ``model`` on ``(tokens, labels)``, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(tokens), batch_size):
        correct += int((model.classify(tokens[i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(tokens), 1)
