"""labsupport: the helper package of the course "Transformer Networks: How They Work and Why They Matter".

One concept per module, each readable top to bottom:

* :mod:`labsupport.device`     where code runs (cuda, mps, cpu) and seeding
* :mod:`labsupport.attention`  softmax, scaled dot-product attention, masks, MultiHeadAttention (Labs 1-2)
* :mod:`labsupport.positional` sinusoidal, learned and 2-D patch positional encodings (Lab 3)
* :mod:`labsupport.blocks`     LayerNorm, FeedForward, encoder and decoder blocks (Lab 4)
* :mod:`labsupport.models`     Seq2SeqTransformer, GPT, BERT, ViT built from the blocks (Labs 5-8)
* :mod:`labsupport.data`       tokenizers and the offline datasets
* :mod:`labsupport.training`   training loop, warm-up schedule, label smoothing, decoding and sampling
* :mod:`labsupport.viz`        heat maps, curves, explorers
* :mod:`labsupport.checks`     the labs' self-checks, with clear messages
* :mod:`labsupport.grading`    the instructor's release and autograding pipeline (nbgrader)

The reference implementations are the twins of the lab solutions; the tests pin them to PyTorch's modules.
"""
__version__ = "0.1.0"
