"""Sphinx extension of the book: a bibliography list labelled by author and year, like the citations in the text.

sphinxcontrib-bibtex's ``plain`` style numbers the entries ``[1]`` to ``[n]`` while the text cites
``[Vaswani et al., 2017]`` (``bibtex_reference_style = author_year``). This registers the pybtex formatting
style ``author_year_list``: ``plain``'s entries and sorting (by author, year, title) with the label the text
uses, so that an entry reads ``[Vaswani et al., 2017] Ashish Vaswani, ...`` and a reader can match a citation
to its entry by eye. An entry without a year (the undated talk the course follows) is labelled by its
author alone. ``book/bibliography.md`` asks for it with ``:style: author_year_list``.

(A ``:list: bullet`` bibliography would drop the labels too, but sphinxcontrib-bibtex resolves citations only
to ``:list: citation`` bibliographies, so every citation in the book would break.)
"""
from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _last_name(person) -> str:
    name = " ".join(person.prelast_names + person.last_names)
    return Text.from_latex(name).render_as("text") if "\\" in name or "{" in name else name


def author_year_label(entry) -> str:
    """``Ba and Kiros, 2016``-style label: one or two authors by name, three or more as ``First et al.``."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_name(p) for p in people]
    if not names:
        who = entry.fields.get("title", entry.key)
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    year = entry.fields.get("year")
    return f"{who}, {year}" if year else who


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield author_year_label(entry)


class AuthorYearListStyle(PlainStyle):
    default_label_style = AuthorYearLabelStyle


register_plugin("pybtex.style.formatting", "author_year_list", AuthorYearListStyle)


def setup(app):
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
