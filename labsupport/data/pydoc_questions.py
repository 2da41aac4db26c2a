"""Semantic search over Python's help topics (Lab 9): a labelled set of questions whose answer is a topic.

The documents are the help topics of ``pydoc_data.topics`` (what ``help("for")`` prints), less four that
would make the answer ambiguous: ``compound``, ``specialnames`` and ``execmodel`` are chapters that contain
other topics whole (``compound`` holds ``if``, ``while``, ``for``, ``try``, ``with``, ``function``, ``class``
and ``async``), and ``else`` has exactly the text of ``if``.

:data:`QUESTIONS` are questions a Python learner might ask, written for this course, each with the one topic
that answers it. Many of them share few words with their topic ("How can I stop a loop early?" is answered by
``break``, whose text never says "early"): a search that matches words does worse than one that matches
meaning. :func:`retrieval_metrics` scores a search: top-1 and top-k accuracy and the mean reciprocal rank;
:func:`tfidf_scores` is the word-matching baseline (scikit-learn's TF-IDF).
"""
from __future__ import annotations

import numpy as np
import torch

from labsupport.data.pydoc_text import topics

__all__ = ["EXCLUDED", "QUESTIONS", "corpus", "questions", "answer_ids", "retrieval_metrics", "ranks",
           "tfidf_scores"]

#: topics left out of the search: chapters that contain other topics whole, and a duplicate
EXCLUDED = ("compound", "specialnames", "execmodel", "else")

#: (question, topic that answers it)
QUESTIONS: list[tuple[str, str]] = [
    ("How can I stop a loop early when I have found what I was looking for?", "break"),
    ("How do I skip the rest of this iteration and go on with the next one?", "continue"),
    ("How do I write a statement that does nothing, as a placeholder?", "pass"),
    ("How do I check that a condition holds while debugging, and fail loudly if it does not?", "assert"),
    ("How do I signal an error from my own code?", "raise"),
    ("How do I catch an error and run some cleanup code whatever happens?", "try"),
    ("How do I send a value back from a function to its caller?", "return"),
    ("How do I make a generator produce values one at a time?", "yield"),
    ("How do I change a module-level variable from inside a function?", "global"),
    ("How can an inner function rebind a variable of the function that encloses it?", "nonlocal"),
    ("How do I remove a name, or an item of a list?", "del"),
    ("How do I repeat a block as long as a condition stays true?", "while"),
    ("How do I loop over the items of a list?", "for"),
    ("How do I choose between alternatives depending on a condition?", "if"),
    ("How do I make sure a file is closed after I am done with it?", "with"),
    ("What methods must an object define to be used in a with block?", "context-managers"),
    ("How do I use code from another module?", "import"),
    ("How do I write a small anonymous function in one expression?", "lambda"),
    ("How do I define a function with default parameter values?", "function"),
    ("How do I create a new class that inherits from another?", "class"),
    ("How do I define a coroutine that can be paused and resumed?", "async"),
    ("How do I wait for an awaitable inside a coroutine?", "await"),
    ("What happens when I call a function with keyword arguments and *args?", "calls"),
    ("How do I test whether a value is contained in a list or a dictionary?", "in"),
    ("What does x += 1 do, and how does it differ from x = x + 1?", "augassign"),
    ("How can I unpack a tuple into several variables at once?", "assignment"),
    ("In what order are operators evaluated, for example * before +?", "operator-summary"),
    ("What does the ** operator compute, and how does it group with a minus sign?", "power"),
    ("How do I move the bits of an integer to the left?", "shifting"),
    ("How do I compute the AND, OR or XOR of two integers bit by bit?", "bitwise"),
    ("What do a minus sign or a tilde in front of a number do?", "unary"),
    ("How do division, floor division and the remainder operator work?", "binary"),
    ("How do I chain comparisons like a < b < c, and what does 'is' test?", "comparisons"),
    ("How do and, or and not work, and what do they return?", "booleans"),
    ("Which values count as false in a condition?", "truth"),
    ("How do I write a hexadecimal or binary number in code?", "integers"),
    ("How do I write a number in scientific notation such as 1e-3?", "floating"),
    ("How do I write a complex number with an imaginary part?", "imaginary"),
    ("What happens when an int and a float are added together?", "conversions"),
    ("How do I put a quote character or a newline inside a string literal?", "strings"),
    ("How do I make a string upper case, or split it into words?", "string-methods"),
    ("How do I align and pad values when formatting a string?", "formatstrings"),
    ("How do I take every second element of a list, or the last three?", "slicings"),
    ("How do I get one element of a sequence by its position?", "subscriptions"),
    ("How do I build a list with square brackets or a list comprehension?", "lists"),
    ("How do I write a dictionary of key/value pairs in curly braces?", "dict"),
    ("How do I get a value from a dictionary with a default, and iterate over its keys?", "typesmapping"),
    ("How do I sort a list in place, append to it or remove an item?", "typesseq-mutable"),
    ("Which operations do tuples, ranges and lists share, like concatenation and repetition?", "typesseq"),
    ("Which methods make my class behave like a container with len() and indexing?", "sequence-types"),
    ("How do I make instances of my class support + and *?", "numeric-types"),
    ("How can I control what happens when an attribute that does not exist is read?", "attribute-access"),
    ("How do I make an instance callable like a function?", "callable-types"),
    ("How do I control how an object is printed, or compared for equality?", "customization"),
    ("How do I step through a program line by line and set breakpoints?", "debugger"),
    ("What is the object returned by a function that has no return statement?", "bltin-null-object"),
    ("What is the ... object used for?", "bltin-ellipsis-object"),
    ("How do I find out the type of an object?", "bltin-type-objects"),
    ("What is a code object, as made by compile()?", "bltin-code-objects"),
    ("What are the identity, type and value of an object, and what is mutability?", "objects"),
    ("What kinds of built-in types does Python have: numbers, sequences, mappings, callables?", "types"),
    ("What are the rules for valid variable names, and which words are reserved keywords?", "identifiers"),
    ("What do names with leading underscores or double underscores mean?", "id-classes"),
    ("What is a bound method and how is self passed?", "typesmethods"),
    ("What can I do with a module object once it is imported?", "typesmodules"),
    ("What does __dict__ or __class__ of an object contain?", "specialattrs"),
    ("What happens when an error occurs and nobody handles it?", "exceptions"),
    ("How are names bound and in which scope does Python look them up?", "naming"),
    ("Why do eval and exec not see my local variables the way I expect?", "dynamic-features"),
    ("What does a comma-separated list of expressions evaluate to?", "exprlists"),
    ("How do I get a method or a field of an object with a dot?", "attribute-references"),
    ("What happens when a name that was never assigned is used?", "atom-identifiers"),
    ("What literal values can appear in a program: strings, bytes, numbers?", "atom-literals"),
    ("What kinds of numeric literals are there?", "numbers"),
    ("What is the difference between built-in functions and user-defined functions?", "typesfunctions"),
]


def corpus() -> dict[str, str]:
    """The documents of the search: ``{topic: text}`` in alphabetical order, without :data:`EXCLUDED`."""
    t = topics()
    return {name: t[name].strip() for name in sorted(t) if name not in EXCLUDED}


def questions() -> list[tuple[str, str]]:
    """:data:`QUESTIONS` whose topic this Python's documentation has (all of them on Python 3.11; another
    version may have renamed a topic)."""
    names = set(corpus())
    return [(q, a) for q, a in QUESTIONS if a in names]


def answer_ids(pairs=None, names=None) -> torch.Tensor:
    """The index of each question's topic in ``names`` (default: the corpus' order): ``(Q,)`` int64."""
    names = list(corpus()) if names is None else list(names)
    pairs = questions() if pairs is None else pairs
    return torch.tensor([names.index(a) for _, a in pairs], dtype=torch.long)


def ranks(scores, answers) -> torch.Tensor:
    """The rank of each question's answer, 1 = best: ``1 +`` the number of documents scored strictly higher.
    ``scores (Q, T)`` (a row per question), ``answers (Q,)`` document indices."""
    scores = torch.as_tensor(scores)
    answers = torch.as_tensor(answers, dtype=torch.long)
    right = scores.gather(1, answers[:, None])
    return (scores > right).sum(1) + 1


def retrieval_metrics(scores, answers, k: int = 5) -> tuple[float, float, float]:
    """``(top-1 accuracy, top-k accuracy, mean reciprocal rank)`` of a search, as Python floats in [0, 1]:
    the share of questions whose answer is ranked first, ranked among the first ``k``, and the mean of
    ``1 / rank`` (1 when every answer is first, 0.5 when all are second, ...)."""
    r = ranks(scores, answers).double()
    return float((r == 1).double().mean()), float((r <= k).double().mean()), float((1.0 / r).mean())


def tfidf_scores(documents, queries, **options) -> torch.Tensor:
    """Cosine similarities ``(Q, T)`` of TF-IDF vectors (scikit-learn's ``TfidfVectorizer`` fitted on the
    documents; English stop words removed and sub-linear term frequencies unless ``options`` say otherwise)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(**{"stop_words": "english", "sublinear_tf": True, **options})
    docs = vectorizer.fit_transform(list(documents))
    q = vectorizer.transform(list(queries))
    return torch.from_numpy(np.asarray((q @ docs.T).todense(), dtype=np.float64))
