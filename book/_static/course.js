/* The course's run-time fixes of the theme (sphinx-book-theme 1.3.0 on pydata-sphinx-theme 0.17.1).
 * Loaded by book/_ext/course_site.py on every page; no network, no dependencies.
 *
 * 1. Navigation toggles. Both themes put a `.primary-toggle` (and a `.secondary-toggle`) in the page: the
 *    pydata header's, hidden by the book theme, first; the book theme's visible one second. Both themes bind
 *    their click handlers with document.querySelector, i.e. to the first, hidden button, so tapping the
 *    visible "menu" or "contents" button only shows its tooltip: on a phone the navigation cannot be opened,
 *    at desktop width the menu cannot collapse the sidebar. Upstream bug: pydata/pydata-sphinx-theme#2451,
 *    executablebooks/sphinx-book-theme#988. Workaround: a click on any other toggle is forwarded to the first
 *    one, where the themes' own handlers (dialog on a narrow screen, collapse on a wide one) do the work.
 *    tests/browser checks both widths, so an upgrade that fixes it upstream shows up as a double toggle.
 * 2. Names that match what is shown (axe: label-content-name-mismatch): the search buttons' visible text is
 *    "Search Ctrl+K" under aria-label "Search"; the colour-mode button's icons carry titles of their own
 *    (hidden, also after Font Awesome turns them into SVGs).
 */
(function () {
  "use strict";

  function forwardToggles(selector) {
    var toggles = Array.prototype.slice.call(document.querySelectorAll(selector));
    if (toggles.length < 2) return;
    var bound = toggles[0];
    toggles.slice(1).forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        event.stopPropagation();
        button.blur();
        bound.click();
      });
    });
  }

  function fixNames() {
    document.querySelectorAll(".search-button-field[aria-label]").forEach(function (button) {
      if (button.textContent.trim()) button.removeAttribute("aria-label");
    });
    // Font Awesome's deferred script replaces each <i> icon by an <svg> (with a <title> when the <i> had one)
    // at a moment of its own: hide the icons now and again whenever the button's content changes.
    document.querySelectorAll(".theme-switch-button").forEach(function (button) {
      hideIcons(button);
      new MutationObserver(function () { hideIcons(button); }).observe(button, {childList: true, subtree: true});
    });
  }

  function hideIcons(button) {
    button.querySelectorAll(".theme-switch, svg").forEach(function (icon) {
      icon.removeAttribute("title");
      icon.removeAttribute("aria-labelledby");
      icon.removeAttribute("role");
      icon.setAttribute("aria-hidden", "true");
      icon.querySelectorAll("title").forEach(function (title) { title.remove(); });
    });
  }

  function init() {
    forwardToggles(".primary-toggle");
    forwardToggles(".secondary-toggle");
    fixNames();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
