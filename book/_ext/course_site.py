"""Sphinx extension of the book: the site works offline, on a phone and with a screen reader, and its launch
buttons open something that runs. Each fix says which upstream behaviour it works around.

* **Offline widgets.** myst-nb renders a widget output (the labs' tqdm progress bars) as a placeholder that
  require.js (cdnjs) and ``@jupyter-widgets/html-manager`` (jsdelivr) fill in the browser, from the CDNs;
  offline the bars vanish. Here a progress bar is rendered at build time from the widget state stored in the
  notebook, as the finished bar it was (a ``<progress>`` with its text), and no widget JavaScript is loaded.
  Any other widget becomes a short note that it is interactive in Jupyter.
* **No thebe.** sphinx-thebe (always added by Jupyter Book 1) writes its config ``<script>`` twice into every
  page (``const THEBE_JS_URL`` declared twice: a JavaScript error on every page) and points at unpkg. The
  book has no live-code button, so its assets are left out.
* **Accessible body HTML.** Code-cell toggles are ``<summary aria-label="Toggle hidden content">`` showing
  "Show code cell source" (axe: label-content-name-mismatch, serious): the label is dropped, so the visible
  text is the name. sphinxcontrib-bibtex's ``role="list"`` holds ``role="doc-biblioentry"`` entries, which
  axe does not accept as list items (aria-required-children, critical): they become ``listitem``. An empty
  table header cell (the corner of a comparison table) becomes a ``<td>`` (empty-table-header).
* **Launch buttons that run** (see :func:`launch_targets`): a lab page launches the student version of the
  lab (``student/<lab>.ipynb``, produced by the release step); a chapter page launches on Binder the notebook
  that ``binder/postBuild`` makes of the chapter with jupytext, and offers no Colab button (Colab opens files
  from GitHub, where a chapter is MyST markdown that it cannot run).
* **A site without solutions** (``make site``, for an instructor who grades): with ``COURSE_SITE=student``
  the lab pages are read from ``student/<lab>.ipynb`` (the release step's versions: no solutions, no hidden
  tests, no model answers) instead of ``notebooks/``. Self-learners keep the default book, with collapsed
  solutions.
* ``book/_static/course.js`` and ``course.css`` fix the theme's navigation toggles and labels at run time and
  give wide display equations a scroll cue (see those files).
"""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
LAB_PAGE = re.compile(r"notebooks/(lab\d\d_\w+)$")
STUDENT_DIR = "student"
THEBE_CONFIG = re.compile(r'\s*<script type="text/x-thebe-config">.*?</script>'
                          r'\s*<script>kernelName = [^<]*</script>', re.S)


# ------------------------------------------------------------------------------------------------
# widgets rendered at build time
# ------------------------------------------------------------------------------------------------
def _text(fragment) -> str:
    """The text of an HTML fragment stored by an HTML widget (tqdm escapes it)."""
    return html.unescape(re.sub(r"<[^>]+>", "", str(fragment or ""))).replace("\u2007", " ").strip()


def static_widget_html(model_id: str, state: dict) -> str:
    """Static HTML for the widget ``model_id`` of a notebook's saved widget ``state``.

    A tqdm bar (an HBox of HTML, a progress bar and HTML) becomes the finished bar with its two texts;
    anything else becomes a note.
    """
    model = state.get(model_id, {})
    children = [state.get(str(c).removeprefix("IPY_MODEL_"), {}) for c in model.get("state", {}).get("children", [])]
    kinds = [c.get("model_name") for c in children]
    if model.get("model_name") == "HBoxModel" and len(children) == 3 and kinds[0] == kinds[2] == "HTMLModel" \
            and kinds[1] in ("FloatProgressModel", "IntProgressModel"):
        left, right = _text(children[0]["state"].get("value")), _text(children[2]["state"].get("value"))
        bar = children[1]["state"]
        value, top = float(bar.get("value") or 0), float(bar.get("max") or 1)
        style = bar.get("bar_style") or "info"
        label = html.escape(f"{left} {right}".strip(), quote=True)
        return (f'<div class="course-progress course-progress-{html.escape(style)}">'
                f'<span class="course-progress-left">{html.escape(left)}</span>'
                f'<progress value="{value:g}" max="{top:g}" aria-label="{label}"></progress>'
                f'<span class="course-progress-right">{html.escape(right)}</span></div>')
    return ('<p class="course-widget-note">An interactive widget was here: run this page in Jupyter '
            '(the launch buttons above) to use it.</p>')


def _patch_myst_nb() -> None:
    """Render widget views statically and load no widget JavaScript (myst-nb 1.x renderer methods)."""
    from myst_nb.core import render

    if getattr(render.NbElementRenderer, "_course_static_widgets", False):
        return

    def render_widget_view(self, data):
        metadata = self.renderer.nb_client.nb_metadata or {}
        state = (metadata.get("widgets") or {}).get(WIDGET_STATE, {}).get("state", {})
        view = data.content  # a dict (nbformat keeps JSON mime data parsed) or its JSON text
        try:
            model_id = (view if isinstance(view, dict) else json.loads(data.string))["model_id"]
        except (ValueError, KeyError, TypeError):
            model_id = ""
        return [nodes.raw(text=static_widget_html(model_id, state), format="html")]

    def render_nb_finalise(self, metadata):
        """myst-nb adds the widget state and the CDN widget manager here; nothing is needed any more."""

    render.NbElementRenderer.render_widget_view = render_widget_view
    render.NbElementRenderer.render_widget_view_inline = render_widget_view
    render.NbElementRenderer.render_nb_finalise = render_nb_finalise
    render.NbElementRenderer._course_static_widgets = True


# ------------------------------------------------------------------------------------------------
# assets and body HTML
# ------------------------------------------------------------------------------------------------
def _is_thebe(asset) -> bool:
    name = str(getattr(asset, "filename", "") or "")
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "thebe" in name or "THEBE_JS_URL" in body


def fix_body(body: str) -> str:
    """The accessibility fixes of a page's rendered body (see the module docstring)."""
    body = THEBE_CONFIG.sub("", body)
    body = body.replace('<summary aria-label="Toggle hidden content">', "<summary>")
    body = body.replace('role="doc-biblioentry"', 'role="listitem"')
    return re.sub(r"<th([^>]*)>\s*</th>", r"<td\1></td>", body)


def _on_page(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        if isinstance(context.get(key), list):
            context[key][:] = [a for a in context[key] if not _is_thebe(a)]
    if isinstance(context.get("body"), str):
        context["body"] = fix_body(context["body"])


# ------------------------------------------------------------------------------------------------
# launch buttons
# ------------------------------------------------------------------------------------------------
def launch_targets(pagename: str, srcdir: Path) -> tuple[str, bool] | None:
    """What the launch buttons of ``pagename`` open: (path in the repository, whether Colab can open it).

    None: offer no launch button (a lab without a student version would otherwise open its solutions).
    """
    lab = LAB_PAGE.match(pagename)
    if lab:
        student = f"{STUDENT_DIR}/{lab.group(1)}.ipynb"
        return (student, True) if (srcdir / student).exists() else None
    if (srcdir / f"{pagename}.md").exists():
        return f"{pagename}.ipynb", False  # written by binder/postBuild (jupytext); not on GitHub
    return f"{pagename}.ipynb", True


def _on_page_launch(app, pagename, templatename, context, doctree):
    groups = [b for b in context.get("header_buttons", []) if b.get("label") == "launch-buttons"]
    if not groups:
        return
    target = launch_targets(pagename, Path(app.srcdir))
    if target is None:
        # not a warning (the strict build would fail while a new lab is written); tests/browser/test_launch.py
        # fails until student/ has it
        LOGGER.info(f"{pagename}: no {STUDENT_DIR}/ version of this lab yet, so no launch buttons (they would "
                    f"open the instructor's solutions): run book/_ext/student_labs.py")
        context["header_buttons"].remove(groups[0])
        return
    path, colab_ok = target
    source = app.env.doc2path(pagename, base=False)
    source = Path(source).as_posix()
    buttons = []
    for button in groups[0]["buttons"]:
        if button.get("text") == "Colab" and not colab_ok:
            continue
        if "url" in button:
            button = dict(button, url=button["url"].replace(source, path))
        buttons.append(button)
    groups[0]["buttons"] = buttons
    if not buttons:
        context["header_buttons"].remove(groups[0])


# ------------------------------------------------------------------------------------------------
# make site: the labs without solutions
# ------------------------------------------------------------------------------------------------
def student_source(docname: str, srcdir: Path) -> str | None:
    """The student version's text for a lab page, None for any other page (or a lab without one)."""
    lab = LAB_PAGE.match(docname)
    path = srcdir / STUDENT_DIR / f"{lab.group(1)}.ipynb" if lab else None
    return path.read_text(encoding="utf-8") if path and path.exists() else None


def _on_source_read(app, docname, source):
    if app.config.course_site != "student" or not LAB_PAGE.match(docname):
        return
    text = student_source(docname, Path(app.srcdir))
    if text is None:
        LOGGER.warning(f"{docname}: no {STUDENT_DIR}/ version (run book/_ext/student_labs.py); the site "
                       f"shows an empty page rather than its solutions", type="course", subtype="site")
        source[0] = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    else:
        source[0] = text


def setup(app):
    _patch_myst_nb()
    # "student": lab pages from student/ (make site); a config value, so that switching rebuilds the pages
    app.add_config_value("course_site", os.environ.get("COURSE_SITE", ""), "env")
    app.connect("source-read", _on_source_read, priority=100)  # before lab_answers (500) reads the JSON
    app.add_js_file("course.js", **{"defer": "defer"})
    app.add_css_file("course.css")
    app.connect("html-page-context", _on_page_launch, priority=600)  # after sphinx-book-theme's (501)
    app.connect("html-page-context", _on_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
