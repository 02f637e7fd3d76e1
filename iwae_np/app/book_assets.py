"""The book's style sheet and its search script, written into ``_static/`` by the builder
(``iwae_np.app.book``). They live in a module, not as package data, so that every kind of
install carries them; neither refers to anything outside the book's folder."""

CSS = """\
/* iwae_np · the course as a book. Nothing here is fetched from outside the book's folder. */
@font-face {
  font-family: "STIX Two Math";
  src: url("STIXTwoMath-Regular.ttf") format("truetype");
}
:root {
  --fg: #1f2328; --muted: #59636e; --line: #d8dee4; --soft: #f6f8fa;
  --accent: #0b5cad; --note: #eef5fc;
}
* { box-sizing: border-box; }
html { scroll-padding-top: 4rem; }
body {
  margin: 0; color: var(--fg); background: #fff;
  font: 17px/1.6 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
}
a { color: var(--accent); }
math { font-family: "STIX Two Math", math; font-size: 1.1em; }
math[display="block"] {
  display: block math; margin: 0.9em 0; padding: 0.2em 0; overflow-x: auto; overflow-y: hidden;
}
pre, code, kbd {
  font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.86em;
}
pre { line-height: 1.45; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border-bottom: 1px solid var(--line); padding: 0.3em 0.7em; text-align: left;
  vertical-align: top; }
th { background: var(--soft); }

.book-nav {
  position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 0.4rem 1.2rem;
  align-items: center; padding: 0.55rem 1.25rem; background: #fff;
  border-bottom: 1px solid var(--line);
}
.book-nav a { text-decoration: none; }
.book-nav .book-home { font-weight: 600; color: var(--fg); margin-right: auto; }
.book-search input {
  font: inherit; font-size: 0.9em; padding: 0.25em 0.6em; width: 15rem;
  border: 1px solid var(--line); border-radius: 6px;
}
main { max-width: 56rem; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
footer { max-width: 56rem; margin: 0 auto; padding: 1rem 1.25rem 3rem; color: var(--muted);
  font-size: 0.85em; border-top: 1px solid var(--line); }

/* lesson pages: nbconvert's basic template */
.prompt { display: none; }
.cell { margin: 0.6em 0; }
.input_area pre, .highlight pre {
  background: var(--soft); padding: 0.7em 0.9em; border-radius: 6px; overflow-x: auto;
  margin: 0.4em 0;
}
.output_area pre {
  margin: 0.3em 0; padding: 0.35em 0.9em; border-left: 3px solid var(--line); overflow-x: auto;
}
/* printed text wraps (a long message would otherwise run off the page); tables stay laid out */
.output_stream pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.output_stderr pre { background: #fff5f5; border-left-color: #e5b0b0; }
.output_png, .output_svg { margin: 0.4em 0; }
.anchor-link { margin-left: 0.3em; text-decoration: none; color: var(--muted);
  visibility: hidden; }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link,
h4:hover .anchor-link { visibility: visible; }
.lesson-bar, .uses {
  background: var(--note); border-radius: 8px; padding: 0.6em 1em; margin: 0 0 1em;
  font-size: 0.92em;
}
.uses a.source { font-size: 0.85em; }
.pager { display: flex; justify-content: space-between; gap: 1em; margin-top: 3em; }
.offbook { border-bottom: 1px dotted var(--muted); }
.edition { background: var(--note); border-radius: 8px; padding: 0.6em 1em; }
ul.lessons { list-style: none; padding-left: 0; }
/* a shell command in the map wraps rather than hides its end */
.map pre { white-space: pre-wrap; overflow-wrap: anywhere; }

/* API reference and source */
.api-entry { border-top: 1px solid var(--line); padding-top: 0.4em; margin-top: 1.6em; }
.api-entry h3, .api-entry h4 { font-weight: 600; margin: 0.4em 0; overflow-wrap: anywhere; }
.api-entry h3 code, .api-entry h4 code { font-size: 0.9em; }
.api-method { margin-left: 1.5em; }
a.source { font-size: 0.8em; font-weight: normal; margin-left: 0.6em; }
pre.doc-block {
  background: none; border-left: 3px solid var(--line); padding: 0.2em 0.9em; overflow-x: auto;
}
.kind { color: var(--muted); font-size: 0.8em; font-weight: normal; }
.source-page pre { background: var(--soft); padding: 0.7em; border-radius: 6px;
  overflow-x: auto; }
.source-page .linenos { color: #8c959f; user-select: none; padding-right: 0.8em; }
.source-page :target { background: #fff3bf; }
ul.toc { columns: 2 16rem; }

/* search */
#search-input { font: inherit; padding: 0.35em 0.6em; width: min(30rem, 100%);
  border: 1px solid var(--line); border-radius: 6px; }
#search-results li { margin: 0.7em 0; }
#search-results .where { color: var(--muted); font-size: 0.85em; }
#search-results .snippet { display: block; font-size: 0.9em; }
mark { background: #fff3bf; }
"""

SEARCH_JS = """\
/* The book's search: the index is a script (search_index.js sets BOOK_SEARCH_INDEX), so it
   works from file:// as well as from a server, and nothing is fetched from anywhere. */
(function () {
  "use strict";

  function words(text) {
    return text.toLowerCase().split(/[^\\p{L}\\p{N}_]+/u).filter(function (w) {
      return w.length > 0;
    });
  }

  function occurrences(text, term) {
    var count = 0, at = text.indexOf(term);
    while (at >= 0 && count < 5) { count += 1; at = text.indexOf(term, at + term.length); }
    return count;
  }

  // Sections holding every term, best first: a term in a heading counts 10, in the text 1
  // per occurrence (at most 5).
  function search(query) {
    var terms = words(query), hits = [];
    if (terms.length === 0) { return hits; }
    (window.BOOK_SEARCH_INDEX || []).forEach(function (entry) {
      var title = (entry.t + " " + entry.p).toLowerCase(), text = entry.x.toLowerCase();
      var score = 0;
      for (var i = 0; i < terms.length; i += 1) {
        var found = 10 * occurrences(title, terms[i]) + occurrences(text, terms[i]);
        if (found === 0) { return; }
        score += found;
      }
      hits.push({ entry: entry, score: score, term: terms[0] });
    });
    hits.sort(function (a, b) { return b.score - a.score; });
    return hits.slice(0, 60);
  }

  function snippet(parent, text, term) {
    var at = text.toLowerCase().indexOf(term);
    if (at < 0) { parent.textContent = text.slice(0, 160); return; }
    var start = Math.max(0, at - 70);
    parent.appendChild(document.createTextNode((start > 0 ? "… " : "") + text.slice(start, at)));
    var mark = document.createElement("mark");
    mark.textContent = text.slice(at, at + term.length);
    parent.appendChild(mark);
    parent.appendChild(document.createTextNode(text.slice(at + term.length, at + 110) + " …"));
  }

  function show(query) {
    var list = document.getElementById("search-results");
    var status = document.getElementById("search-status");
    var hits = search(query);
    list.textContent = "";
    status.textContent = query.trim() === "" ? "Type a word to search the lessons and the API." :
      hits.length + (hits.length === 1 ? " section" : " sections") + " found for \\u201c" +
      query.trim() + "\\u201d.";
    hits.forEach(function (hit) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = hit.entry.u;
      link.textContent = hit.entry.t || hit.entry.p;
      item.appendChild(link);
      var where = document.createElement("span");
      where.className = "where";
      where.textContent = " \\u2014 " + hit.entry.p;
      item.appendChild(where);
      var text = document.createElement("span");
      text.className = "snippet";
      snippet(text, hit.entry.x, hit.term);
      item.appendChild(text);
      list.appendChild(item);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var input = document.getElementById("search-input");
    var query = new URLSearchParams(window.location.search).get("q") || "";
    input.value = query;
    show(query);
    input.addEventListener("input", function () { show(input.value); });
    document.getElementById("search-form").addEventListener("submit", function (event) {
      event.preventDefault();
      show(input.value);
    });
  });
})();
"""

FONT_NOTICE = """\
STIX Two Math (STIXTwoMath-Regular.ttf), copied into this book from the ziamath
package so that equations render the same on every machine, offline.
Copyright 2001-2020 The STIX Fonts Project Authors (https://github.com/stipub/stixfonts).
This Font Software is licensed under the SIL Open Font License, Version 1.1. This license is
available with a FAQ at: https://scripts.sil.org/OFL
"""
