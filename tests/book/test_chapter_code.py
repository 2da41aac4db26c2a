"""Code that the chapters define and the prose makes claims about, run here on its own: the tiled online-softmax
attention of the challenges chapter, the byte-pair encoder of the block chapter, the one-entry answer of the
self-attention exercise, the similarity of distant sinusoidal positions. The functions are taken from the
chapters' code cells, so a change there is tested here."""
from __future__ import annotations

import math
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labsupport.attention import scaled_dot_product_attention_np
from labsupport.positional import sinusoidal_encoding

BOOK = Path(__file__).resolve().parents[2] / "book"


def code_cells(chapter: str) -> list[str]:
    text = (BOOK / f"{chapter}.md").read_text()
    return re.findall(r"```\{code-cell\}[^\n]*\n(?:---\n.*?\n---\n|(?::[^\n]*\n)*)(.*?)\n```", text, re.S)


def define(chapter: str, name: str, namespace: dict | None = None) -> dict:
    """Run the first code cell of ``chapter`` that defines ``name`` (``def name(``), in ``namespace``."""
    namespace = {} if namespace is None else namespace
    cell = next(c for c in code_cells(chapter) if re.search(rf"^def {name}\(", c, re.M))
    source = cell[cell.index(f"def {name}("):]
    # the definition only: up to the first line at column 0 after it that is not part of the function
    lines = source.split("\n")
    end = next((i for i, line in enumerate(lines[1:], 1) if line and not line[0].isspace()), len(lines))
    exec("\n".join(lines[:end]), namespace)
    return namespace


# --- book/challenges.md: FlashAttention's idea -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiled_attention_np():
    return define("challenges", "tiled_attention_np", {"np": np})["tiled_attention_np"]


@pytest.mark.parametrize("n, block", [(1, 128), (100, 128), (300, 128), (257, 64), (64, 7)])
def test_tiled_attention_equals_reference_and_torch(tiled_attention_np, n, block):
    rng = np.random.default_rng(n)
    q, k, v = rng.standard_normal((3, 2, 3, n, 16)).astype(np.float32)
    k = k[..., : max(1, n // 2 + 1), :]          # fewer keys than queries, as in cross-attention
    v = v[..., : k.shape[-2], :]
    ours = tiled_attention_np(q, k, v, block=block)
    reference, _ = scaled_dot_product_attention_np(q, k, v)
    torch_out = F.scaled_dot_product_attention(*(torch.from_numpy(a) for a in (q, k, v))).numpy()
    assert np.allclose(ours, reference, atol=1e-5) and np.allclose(ours, torch_out, atol=1e-5)


def test_tiled_attention_is_stable_with_huge_scores(tiled_attention_np):
    # the running maximum keeps exp() from overflowing, as the stable softmax does
    q = np.full((1, 4, 8), 40.0, dtype=np.float32)
    k = np.linspace(-40, 40, 8 * 300, dtype=np.float32).reshape(1, 300, 8)
    v = np.random.default_rng(0).standard_normal((1, 300, 8)).astype(np.float32)
    out = tiled_attention_np(q, k, v, block=32)
    assert np.isfinite(out).all() and np.allclose(out, scaled_dot_product_attention_np(q, k, v)[0], atol=1e-4)


def peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    out = fn(*args)
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    del out
    return peak


def test_tiled_memory_grows_linearly_and_plain_quadratically(tiled_attention_np):
    rng = np.random.default_rng(0)
    plain, tiled = [], []
    for n in (512, 1024):
        q = rng.standard_normal((2, n, 16)).astype(np.float32)
        plain.append(peak_bytes(lambda a: scaled_dot_product_attention_np(a, a, a), q))
        tiled.append(peak_bytes(lambda a: tiled_attention_np(a, a, a, block=64), q))
    assert 3.5 < plain[1] / plain[0] < 4.5
    assert 1.5 < tiled[1] / tiled[0] < 2.5
    assert tiled[1] < plain[1] / 4


# --- book/block_and_training.md: the small BPE -------------------------------------------------------------------

@pytest.fixture(scope="module")
def bpe():
    import collections
    import heapq
    ns = {"collections": collections, "heapq": heapq, "re": re,
          "piece_re": re.compile(r" ?\w+| ?[^\w\s]+|\s+")}
    assert any("piece_re = re.compile(r\" ?\\w+| ?[^\\w\\s]+|\\s+\")" in c for c in code_cells("block_and_training"))
    define("block_and_training", "train_bpe", ns)
    define("block_and_training", "bpe_encode", ns)
    return ns


TEXT = ("the cat sat on the mat. the cat ate the rat. a mat is not a rat; the theatre is there. " * 20
        + "other words: thesis, theme, then, thermal, cathedral.")


def test_bpe_merges_the_most_frequent_pair_first(bpe):
    merges = bpe["train_bpe"](TEXT, 5)
    pieces = re.findall(r" ?\w+| ?[^\w\s]+|\s+", TEXT)
    pairs = {}
    for p in pieces:
        for a, b in zip(p, p[1:]):
            pairs[a, b] = pairs.get((a, b), 0) + 1
    assert pairs[merges[0]] == max(pairs.values())


def test_bpe_round_trip_and_length(bpe):
    merges = bpe["train_bpe"](TEXT, 60)
    lengths = []
    for m in (0, 10, 30, 60):
        tokens = bpe["bpe_encode"](TEXT, merges[:m])
        assert "".join(tokens) == TEXT                      # lossless
        assert len(set(tokens)) <= len(set(TEXT)) + m       # each merge adds at most one token
        lengths.append(len(tokens))
    assert lengths[0] == len(TEXT) and lengths == sorted(lengths, reverse=True) and lengths[-1] < lengths[0] / 2
    # an unseen word is still written, with known pieces
    unseen = " xylothermic"
    assert "".join(bpe["bpe_encode"](unseen, merges)) == unseen


def test_bpe_training_counts_match_a_naive_recount(bpe):
    # the heap and the piece index must give what re-counting all pairs after every merge gives
    merges = bpe["train_bpe"](TEXT, 25)
    words = [list(p) for p in re.findall(r" ?\w+| ?[^\w\s]+|\s+", TEXT)]
    for a, b in merges:
        counts = {}
        for w in words:
            for pair in zip(w, w[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        assert counts[a, b] == max(counts.values()), (a, b)
        for i, w in enumerate(words):
            new, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    new.append(a + b)
                    j += 2
                else:
                    new.append(w[j])
                    j += 1
            words[i] = new


# --- book/self_attention.md: exercise 1 --------------------------------------------------------------------------

def test_exercise_one_entry_is_enough():
    cell = next(c for c in code_cells("self_attention") if "embedding = {" in c)
    ns: dict = {}
    exec("import numpy as np\n" + cell[cell.index("features = ["):cell.index("def largest")], ns)
    cell = next(c for c in code_cells("self_attention") if "W_Q = np.eye(d)" in c)
    exec(cell[: cell.index("# all tokens at once")], ns)   # d, W_K, W_V, W_Q
    X, W_Q, features, sentence = ns["X"], ns["W_Q"], ns["features"], ns["sentence"]
    K = X                                                   # W^K is the identity in the chapter
    it = sentence.index("it")

    def scores(value):
        W = W_Q.copy()
        W[features.index("pronoun"), features.index("place")] = value
        s = (X @ W)[it] @ K.T
        return s[sentence.index("animal")], s[sentence.index("street")]

    assert sentence[int(np.argmax((X @ W_Q)[it] @ K.T))] == "animal"
    animal, street = scores(2.0)
    assert animal == street == 8.0                          # exactly 2 ties, as the solution says
    assert all(scores(v)[1] > scores(v)[0] for v in (2.01, 3.0, 10.0))


# --- book/positional_encodings.md: distant positions ---------------------------------------------------------------

@pytest.mark.parametrize("d", [64, 128, 512])
def test_similarity_at_offset_100_is_near_one_half(d):
    table = sinusoidal_encoding(201, d)
    at_100 = (table[100] @ table[200]).item() / (d / 2)
    assert 0.4 < at_100 < 0.6, "the chapter says the curves are still near one half at offset 100"
    slow = sum(2 * math.pi * 10000 ** (2 * i / d) > 1000 for i in range(d // 2))
    assert 0.4 < slow / (d // 2) < 0.5, "almost half of the pairs have wavelengths above 1,000"
