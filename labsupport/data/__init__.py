"""Tokenizers and the course's offline datasets (nothing is downloaded: data is generated or ships with Python).

* :mod:`labsupport.data.tokenizers`  :class:`CharTokenizer`, :class:`WordTokenizer` (specials pad/bos/eos/unk/mask)
* :mod:`labsupport.data.toy`         the previous-token / first-token look-up task (Labs 2 and 4)
* :mod:`labsupport.data.numbers`     English to French number phrases made with num2words (Lab 5)
* :mod:`labsupport.data.pydoc_text`  Python's own documentation text, ``pydoc_data.topics`` (Labs 6-7)
* :mod:`labsupport.data.pydoc_tasks` Lab 7's masked-LM windows and its labelled topic task from the same text
* :mod:`labsupport.data.digits`      scikit-learn's 8x8 handwritten digits, split and scaled (Lab 8)

Every ``batches(...)`` function or method returns an endless iterator of batches, what
:func:`labsupport.training.train` takes.
"""
from labsupport.data.tokenizers import SPECIALS, CharTokenizer, Tokenizer, WordTokenizer

__all__ = ["SPECIALS", "Tokenizer", "CharTokenizer", "WordTokenizer"]
