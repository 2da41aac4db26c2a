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

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from labsupport.attention import key_padding_mask
from labsupport.blocks import ACTIVATIONS, Encoder, LayerNorm
from labsupport.models.checkpoints import (
    CheckpointError,
    assign,
    check_tied,
    convert,
    floating_dtype,
    hf_activation,
    hub_folder,
    read_checkpoint,
)
from labsupport.models.config import BERTConfig, make_config, preset

__all__ = ["IGNORE_INDEX", "BERT", "BertEmbeddings", "MLMHead", "ClassifierHead", "mask_tokens", "mlm_loss",
           "mlm_step", "classify_step", "accuracy", "bert_config_from_hf"]

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
    """``LayerNorm(token[tokens] + segment[segments] + position[0..L-1])``, then dropout: ``(B, L, D)``.

    The twin of Lab 7's exercise: three ``nn.Embedding`` tables ``token``, ``segment`` (sentence A = 0, sentence
    B = 1; ``segments`` defaults to all zeros) and ``position`` (one learned vector per position), ``norm``,
    ``dropout``.
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int, num_segments: int = 2, dropout: float = 0.1,
                 *, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.segment = nn.Embedding(num_segments, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.norm = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        if segments is None:
            segments = torch.zeros_like(tokens)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token(tokens) + self.segment(segments) + self.position(positions)
        return self.dropout(self.norm(x))


class MLMHead(nn.Module):
    """``(..., D) -> (..., V)``: ``LayerNorm(act(dense(h))) @ E^T + bias`` with ``E`` the token embedding matrix
    (tied: the same ``(V, D)`` parameter reads words in and writes them out)."""

    def __init__(self, d_model: int, embedding: nn.Embedding, *, activation: str = "gelu",
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.activation = ACTIVATIONS[activation]
        self.norm = LayerNorm(d_model, eps=layer_norm_eps)
        self.embedding = embedding  # shared, counted once by count_parameters
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(self.activation(self.dense(h))) @ self.embedding.weight.T + self.bias


class ClassifierHead(nn.Module):
    """``(B, L, D) -> (B, num_classes)``: ``classifier(dropout(tanh(pooler(hidden[:, 0]))))``, read from the
    ``[CLS]`` position. The twin of Lab 7's exercise."""

    def __init__(self, d_model: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.pooler = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_classes)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The sequence summary BERT classifies: ``tanh(pooler(hidden[:, 0]))`` ``(B, D)``."""
        return torch.tanh(self.pooler(hidden[:, 0]))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(hidden)))


class BERT(nn.Module):
    """The BERT encoder with both heads, configured by :class:`~labsupport.models.config.BERTConfig` (keywords).

    * ``encode(tokens, segments=None, mask=None) -> hidden (B, L, D)``; ``mask`` defaults to the padding mask of
      ``pad_id`` (``(B, 1, 1, L)``, ``True`` = real token), so padded positions are never attended to.
    * ``forward(tokens, segments=None) -> MLM logits (B, L, V)``;
      ``mlm_logits(hidden, picked)`` computes them only at the ``picked`` positions: ``(N, V)`` (cheaper: the
      output layer is the largest matrix of a small model).
    * ``pool(hidden) -> tanh(pooler(hidden[:, 0])) (B, D)``, ``classify(tokens, segments=None) -> (B, num_classes)``.

    Parts: ``embeddings`` (:class:`BertEmbeddings`), ``encoder`` (post-norm :class:`~labsupport.blocks.Encoder`),
    ``head`` (:class:`ClassifierHead`: the pooler and the classifier), ``mlm_head`` (:class:`MLMHead`).
    Initialisation as BERT's: normal(0, 0.02) for weights and embeddings, zero biases, LayerNorms at (1, 0).
    :meth:`from_hf` loads a Hugging Face BERT checkpoint (``BertModel``, ``BertForMaskedLM``, ...).
    """

    def __init__(self, config: BERTConfig | None = None, /, **fields):
        super().__init__()
        self.config = cfg = make_config(BERTConfig, config, fields)
        d_ff = 4 * cfg.d_model if cfg.d_ff is None else cfg.d_ff
        self.vocab_size, self.max_len, self.d_model, self.pad_id = cfg.vocab_size, cfg.max_len, cfg.d_model, cfg.pad_id
        self.num_classes = cfg.num_classes
        self.embeddings = BertEmbeddings(cfg.vocab_size, cfg.max_len, cfg.d_model, cfg.num_segments, cfg.dropout,
                                         layer_norm_eps=cfg.layer_norm_eps)
        self.encoder = Encoder(num_layers=cfg.num_layers, d_model=cfg.d_model, num_heads=cfg.num_heads, d_ff=d_ff,
                               dropout=cfg.dropout, activation=cfg.activation, norm_first=False,
                               layer_norm_eps=cfg.layer_norm_eps, final_norm=False)
        self.head = ClassifierHead(cfg.d_model, cfg.num_classes, cfg.dropout)
        self.mlm_head = MLMHead(cfg.d_model, self.embeddings.token, activation=cfg.activation,
                                layer_norm_eps=cfg.layer_norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(p, mean=0.0, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

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
        return self.head.pool(hidden)

    def classify(self, tokens: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` from the pooled ``[CLS]`` position."""
        return self.head(self.encode(tokens, segments))

    def encoder_parameters(self) -> int:
        """Parameters of the embeddings, the encoder stack and the pooler: what published BERT sizes count."""
        parts = (self.embeddings, self.encoder, self.head.pooler)
        return sum(p.numel() for m in parts for p in m.parameters())

    @classmethod
    def bert_base(cls, **overrides) -> BERT:
        """BERT-base (uncased), ``PRESETS["bert-base"]``: 30,522 WordPiece tokens, 512 positions, 2 segments,
        12 layers, 12 heads, ``d_model=768``, ``d_ff=3072``.

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
        return cls(preset("bert-base", **overrides))

    # ---- Hugging Face checkpoints ---------------------------------------------------------------------------------
    @classmethod
    def from_hf(cls, source, config=None, **overrides) -> BERT:
        """A :class:`BERT` holding the weights of a Hugging Face BERT checkpoint, in eval mode.

        ``source``: a ``transformers`` ``BertModel`` / ``BertForMaskedLM`` / ``BertForPreTraining`` /
        ``BertForSequenceClassification``, its ``state_dict`` (names with or without the ``bert.`` prefix), a
        ``.safetensors`` file or a folder with ``model.safetensors`` and ``config.json`` (e.g.
        sentence-transformers/all-MiniLM-L6-v2). ``config``: the ``config.json`` (dict, path or ``BertConfig``)
        when ``source`` does not carry it. ``overrides`` change fields of the resulting :class:`BERTConfig`
        (``dropout=0.0``, ``pad_id=...``). The heads a checkpoint lacks (the MLM head of a ``BertModel``, the
        classifier) keep their fresh initialisation; the names of those parts are in ``model.fresh_parts``.
        Any tensor that does not fit raises :class:`~labsupport.models.checkpoints.CheckpointError`.
        """
        state, hf = read_checkpoint(source, config)
        classifier = state.get("classifier.weight", state.get("cls.seq_relationship.weight"))
        cfg = bert_config_from_hf(hf, num_classes=None if classifier is None else classifier.shape[0], **overrides)
        model = cls(cfg).to(floating_dtype(state))
        tensors = convert(state, _BERT_RULES, _BERT_IGNORE, what="BERT checkpoint")
        check_tied(tensors, "mlm_head.embedding.weight", "embeddings.token.weight", "BERT checkpoint")
        tensors.pop("mlm_head.embedding.weight", None)
        model.fresh_parts = assign(model, tensors, optional=("head.pooler", "head.classifier", "mlm_head"),
                                   what="BERT checkpoint")
        return model.eval()

    @classmethod
    def from_pretrained(cls, repo_id: str = "bert-base-uncased", **overrides) -> BERT:
        """Download (or take from the local cache) a BERT from the Hugging Face hub and load it with
        :meth:`from_hf`. Offline it fails at once and names the offline model of Lab 9."""
        return cls.from_hf(hub_folder(repo_id), **overrides)


def bert_config_from_hf(hf: dict, num_classes: int | None = None, **overrides) -> BERTConfig:
    """Our :class:`BERTConfig` from a Hugging Face ``BertConfig`` (as a dict)."""
    if not hf:
        raise CheckpointError("a BERT checkpoint needs its configuration: pass config= (config.json, a dict or "
                              "a transformers BertConfig)")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"position_embedding_type={hf['position_embedding_type']!r}: only absolute (learned) "
                              "positions are supported")
    try:
        cfg = BERTConfig(vocab_size=hf["vocab_size"], max_len=hf["max_position_embeddings"], d_model=hf["hidden_size"],
                         num_heads=hf["num_attention_heads"], num_layers=hf["num_hidden_layers"],
                         d_ff=hf["intermediate_size"], dropout=hf.get("hidden_dropout_prob", 0.1),
                         activation=hf_activation(hf.get("hidden_act", "gelu")),
                         num_segments=hf.get("type_vocab_size", 2),
                         num_classes=num_classes or len(hf.get("id2label") or {}) or 2,
                         pad_id=hf.get("pad_token_id") or 0, layer_norm_eps=hf.get("layer_norm_eps", 1e-12))
    except KeyError as err:
        raise CheckpointError(f"the BERT configuration lacks {err.args[0]!r}") from None
    return dataclasses.replace(cfg, **overrides)


_L = r"(?:bert\.)?encoder\.layer\.(\d+)\."
#: Hugging Face's BertModel names -> ours (embeddings, encoder layers, pooler): the map Lab 9 asks the student to
#: write (its reference, :func:`labsupport.data.minilm.bert_name`, uses this table)
BERT_ENCODER_RULES = [
    (r"(?:bert\.)?embeddings\.word_embeddings\.(weight)", r"embeddings.token.\1"),
    (r"(?:bert\.)?embeddings\.position_embeddings\.(weight)", r"embeddings.position.\1"),
    (r"(?:bert\.)?embeddings\.token_type_embeddings\.(weight)", r"embeddings.segment.\1"),
    (r"(?:bert\.)?embeddings\.LayerNorm\.(weight|bias)", r"embeddings.norm.\1"),
    (_L + r"attention\.self\.query\.(weight|bias)", r"encoder.layers.\1.self_attn.q_proj.\2"),
    (_L + r"attention\.self\.key\.(weight|bias)", r"encoder.layers.\1.self_attn.k_proj.\2"),
    (_L + r"attention\.self\.value\.(weight|bias)", r"encoder.layers.\1.self_attn.v_proj.\2"),
    (_L + r"attention\.output\.dense\.(weight|bias)", r"encoder.layers.\1.self_attn.out_proj.\2"),
    (_L + r"attention\.output\.LayerNorm\.(weight|bias)", r"encoder.layers.\1.norm1.\2"),
    (_L + r"intermediate\.dense\.(weight|bias)", r"encoder.layers.\1.ff.linear1.\2"),
    (_L + r"output\.dense\.(weight|bias)", r"encoder.layers.\1.ff.linear2.\2"),
    (_L + r"output\.LayerNorm\.(weight|bias)", r"encoder.layers.\1.norm2.\2"),
    (r"(?:bert\.)?pooler\.dense\.(weight|bias)", r"head.pooler.\1"),
]
#: ... and the heads, for BertForMaskedLM, BertForPreTraining and BertForSequenceClassification checkpoints
_BERT_RULES = BERT_ENCODER_RULES + [
    (r"classifier\.(weight|bias)", r"head.classifier.\1"),                 # BertForSequenceClassification
    (r"cls\.seq_relationship\.(weight|bias)", r"head.classifier.\1"),     # BertForPreTraining's next-sentence head
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"mlm_head.dense.\1"),
    (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", r"mlm_head.norm.\1"),
    (r"cls\.predictions\.(?:decoder\.)?bias", "mlm_head.bias"),
    (r"cls\.predictions\.decoder\.weight", "mlm_head.embedding.weight"),  # tied to the token embedding
]
_BERT_IGNORE = (r"(?:bert\.)?embeddings\.(position_ids|token_type_ids)",)


# ----------------------------------------------------------------------------------------------------------------
# Step functions for labsupport.training.train
# ----------------------------------------------------------------------------------------------------------------
def mlm_step(model: BERT, tokens: torch.Tensor, mask_id: int, special_ids, generator=None,
             mask_prob: float = 0.15, mask_fn=mask_tokens, loss_fn=mlm_loss) -> tuple[torch.Tensor, torch.Tensor]:
    """One masked-LM step on a batch of token ids ``(B, L)``: mask, encode, predict the picked positions only.
    Returns ``(loss, accuracy)`` on the picked positions.

    ``mask_fn`` and ``loss_fn`` default to this module's :func:`mask_tokens` and :func:`mlm_loss` (a lab passes its
    own). Masking runs where ``tokens`` are (the CPU, with a CPU ``generator``: the same masks on every device);
    the masked batch then moves to the model's device.
    """
    inputs, labels = mask_fn(tokens, mask_id, model.vocab_size, special_ids, mask_prob, generator)
    device = model.embeddings.token.weight.device
    inputs, labels = inputs.to(device), labels.to(device)
    picked = labels != IGNORE_INDEX
    logits = model.mlm_logits(model.encode(inputs), picked)  # (N, V)
    return loss_fn(logits, labels[picked])


def classify_step(model: BERT, batch) -> torch.Tensor:
    """Cross-entropy of the classifier on a batch ``(tokens (B, L), labels (B,))`` (moved to the model's device)."""
    device = model.embeddings.token.weight.device
    tokens, labels = (t.to(device) for t in batch)
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
