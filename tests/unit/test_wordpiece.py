"""labsupport.data.wordpiece against Hugging Face tokenizers: the same ids on the whole of Python's documentation
(the real all-MiniLM-L6-v2 vocabulary) and on hand-made text full of accents, punctuation, CJK and control
characters (a small vocabulary, no model needed)."""
import pytest
import torch

tokenizers = pytest.importorskip("tokenizers")

from labsupport.data import minilm  # noqa: E402
from labsupport.data import wordpiece as wp  # noqa: E402
from labsupport.data.pydoc_text import load_text, topics  # noqa: E402

HARD = ("Héllo\u00a0Wörld! Ça\tva?\x0bcontrol\x85x 日本語テキスト İstanbul ΣΟΦΙΑΣ naïve—café… “quoted” $x^2 + y_1 "
        "≥ 3 ﬁ ﬀ \u200b zero\u200dwidth " + "a" * 101 + " \ufffd\x00ok ½ ① x² Ångström\r\n\tDon't  stop.")


def hf_bert_tokenizer(vocab: dict[str, int]):
    """A tokenizers.Tokenizer configured as BERT uncased (what tokenizer.json of an uncased BERT says)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tok


def small_vocab() -> dict[str, int]:
    words = sorted({w for w in wp.basic_tokenize(HARD + " " + load_text(["assert", "break", "pass"]))})
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for w in words[::2]:  # half the words whole, the other half only in pieces (and some not at all)
        pieces.append(w)
    for w in words[1::2]:
        if len(w) > 2:
            pieces += [w[:2], "##" + w[2:4], "##" + w[4:]] if len(w) > 4 else [w[:2], "##" + w[2:]]
    pieces += [chr(c) for c in range(97, 123)] + ["##" + chr(c) for c in range(97, 115)]
    return {p: i for i, p in enumerate(dict.fromkeys(pieces))}


def test_same_ids_as_hf_tokenizers_on_hard_text_with_a_small_vocabulary():
    vocab = small_vocab()
    hf = hf_bert_tokenizer(vocab)
    ours = wp.WordPieceTokenizer(vocab)
    for text in (HARD, HARD.upper(), load_text(["assert", "break", "pass"])):
        enc = hf.encode(text)
        assert ours.tokenize(text) == enc.tokens[1:-1]
        assert ours.encode(text) == enc.ids
    assert "[UNK]" in ours.tokenize(HARD)


@pytest.fixture(scope="module")
def model_files():
    try:
        return minilm.files()
    except minilm.ModelNotInstalled as err:
        pytest.skip(str(err))


def test_same_ids_as_the_shipped_tokenizer_json_on_the_whole_documentation(model_files):
    hf = tokenizers.Tokenizer.from_file(str(model_files["tokenizer.json"]))
    hf.no_truncation()
    hf.no_padding()
    ours = wp.WordPieceTokenizer.from_file(model_files["vocab.txt"])
    text = load_text()
    mine, theirs = ours.encode(text), hf.encode(text).ids
    assert len(mine) > 100_000
    assert mine == theirs
    # topic by topic as well (other boundaries), and the hard text
    for name, body in topics().items():
        assert ours.encode(body) == hf.encode(body).ids, name
    assert ours.encode(HARD) == hf.encode(HARD).ids


def test_greedy_longest_match_first_and_unknown_words():
    vocab = {p: i for i, p in enumerate(["[UNK]", "un", "una", "##ff", "##ord", "##able", "##a", "##b", "##le",
                                         "token", "##ization", "##iz", "##s"])}
    assert wp.wordpiece("unaffordable", vocab) == ["una", "##ff", "##ord", "##able"]
    assert wp.wordpiece("tokenization", vocab) == ["token", "##ization"]
    assert wp.wordpiece("tokens", vocab) == ["token", "##s"]
    assert wp.wordpiece("tokenq", vocab) == ["[UNK]"]  # the whole word, not token + [UNK]
    assert wp.wordpiece("tokens", vocab, max_chars=5) == ["[UNK]"]
    assert wp.wordpiece("token", vocab, max_chars=5) == ["token"]
    assert wp.wordpiece("", vocab) == []


def test_basic_tokenize_rules():
    assert wp.basic_tokenize("Don't stop, Café!") == ["don", "'", "t", "stop", ",", "cafe", "!"]
    assert wp.basic_tokenize("a$b+c<d=e>f^g`h|i~j") == list("a$b+c<d=e>f^g`h|i~j")
    assert wp.basic_tokenize("“x” — y…") == ["“", "x", "”", "—", "y", "…"]
    assert wp.basic_tokenize("ﬁle x²") == ["ﬁle", "x²"]  # NFD keeps compatibility characters
    assert wp.basic_tokenize("日本") == ["日", "本"]
    assert wp.basic_tokenize("a\x00b\u200bc\td") == ["abc", "d"]
    assert wp.basic_tokenize("Ünïcode", lowercase=False) == ["Ünïcode"]


def test_batch_pads_with_a_mask_and_decode_glues_continuations():
    vocab = {p: i for i, p in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "token", "##ization", "a"])}
    tok = wp.WordPieceTokenizer(vocab)
    ids, mask = tok.batch(["tokenization a", "a"])
    assert ids.tolist() == [[2, 5, 6, 7, 3], [2, 7, 3, 0, 0]]
    assert mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert tok.decode(ids[0]) == "tokenization a"
    assert tok.encode("tokenization a", max_len=3) == [2, 5, 3]
    assert len(tok) == tok.vocab_size == 8 and tok.mask_id == 4
    with pytest.raises(ValueError, match="special tokens"):
        wp.WordPieceTokenizer({"a": 0})
    assert torch.equal(mask, ids != 0)
