"""LaTeX in Markdown to MathML, for the book (``python -m iwae_np book``; docs/design.md §20).

The lessons write math as ``$…$`` (inline) and ``$$…$$`` (display), as Jupyter does. The book
renders it on the server: each span becomes a ``<math>`` element (MathML, which browsers lay
out natively, with the bundled STIX Two Math font), so a page needs no script and no network to
show its equations.

    protect_math(markdown) -> (markdown with each math span replaced by a placeholder, spans)
    restore_math(html, spans) -> html with each placeholder replaced by its MathML
    latex_to_mathml(latex, display) -> one <math> element, as a string

``latex2mathml`` does the conversion; ``latex_to_mathml`` then repairs what MathML Core (the
part of MathML that Chromium implements) would render wrongly: ``mathvariant`` styles other
than "normal" become the Unicode math alphabets (𝔼, ℒ, 𝐱), a function name such as log gets
its thin space before an argument that is not in brackets, a prime sits beside its base
instead of raised a second time, ``\\hat`` is a circumflex accent rather than a caret,
``\\sim`` a relation, a ``\\big``/``\\Big`` delimiter stretches (also a bar, a slash, and
one carrying a script), and a command latex2mathml does not know is reported rather than shown
with its backslash.
"""

import html
import re
import secrets
import unicodedata
import xml.etree.ElementTree as ET

MATHML = "http://www.w3.org/1998/Math/MathML"
ET.register_namespace("", MATHML)

# A math span, or something to step over: a fenced code block, an inline code span (any run of
# backticks), an escaped dollar. Display math first, so that $$ is never read as two $.
_TOKENS = re.compile(
    r"(?P<skip>^(?P<fence>```|~~~).*?^(?P=fence)|(?P<ticks>`+).+?(?P=ticks)|\\\$)"
    r"|\$\$(?P<display>.+?)\$\$"
    r"|\\\[(?P<bracket>.+?)\\\]"
    r"|(?P<env>\\begin\{(?P<name>[a-z]+\*?)\}.+?\\end\{(?P=name)\})"
    r"|\\\((?P<paren>.+?)\\\)"
    r"|\$(?P<inline>(?:[^$\n]|\n(?!\s*\n))+?)\$",
    re.S | re.M,
)

# MathML Core renders mathvariant="normal" only; the others become Unicode math letters.
_ALPHABETS = {
    "bold": "BOLD",
    "italic": "ITALIC",
    "bold-italic": "BOLD ITALIC",
    "double-struck": "DOUBLE-STRUCK",
    "script": "SCRIPT",
    "bold-script": "BOLD SCRIPT",
    "fraktur": "FRAKTUR",
    "bold-fraktur": "BOLD FRAKTUR",
    "sans-serif": "SANS-SERIF",
    "bold-sans-serif": "SANS-SERIF BOLD",
    "sans-serif-italic": "SANS-SERIF ITALIC",
    "sans-serif-bold-italic": "SANS-SERIF BOLD ITALIC",
    "monospace": "MONOSPACE",
}
# Letters that Unicode placed in the Letterlike Symbols block before the math alphabets existed.
_LETTERLIKE = {"FRAKTUR": "BLACK-LETTER", "ITALIC SMALL H": "PLANCK CONSTANT"}
# Operator names latex2mathml (3.81) leaves as text with their backslash.
_MISSING_NAMES = re.compile(r"\\(arg)(?![A-Za-z])")
# Elements whose children are laid out in a row (the others take a fixed number of arguments).
_ROWS = {"math", "mrow", "mstyle", "msqrt", "mtd", "mpadded", "mphantom", "menclose"}
_SIGNS = {"-", "−", "+", "±", "∓"}
_CLOSING = set(")]}|‖⟩⌋⌉")
_PRIMES = {"′", "″", "‴", "⁗"}
_SCRIPTED = {"msub", "msup", "msubsup"}


class MathError(ValueError):
    """A LaTeX span that cannot be converted; names the span."""


def protect_math(markdown):
    """markdown -> (text, spans): each math span replaced by a placeholder made of letters and
    digits only (so no Markdown rule touches it), and spans: [(placeholder, latex, display)]."""
    if not isinstance(markdown, str):
        raise ValueError(f"markdown: expected a str, got {type(markdown).__name__}")
    tag = f"zmath{secrets.token_hex(4)}n"
    spans = []

    def replace(match):
        if match.group("skip"):
            return match.group(0)
        if match.group("inline") is not None:
            latex, display = match.group("inline"), False
        else:
            latex = next(
                match.group(g) for g in ("display", "bracket", "env", "paren") if match.group(g)
            )
            display = match.group("paren") is None
        placeholder = f"{tag}{len(spans)}z"
        spans.append((placeholder, latex.strip(), display))
        return placeholder

    return _TOKENS.sub(replace, markdown), spans


def restore_math(text, spans):
    """Put each span back into ``text`` (HTML rendered from protect_math's output): as MathML in
    the text, and as its LaTeX inside a tag (a heading's id is made from its text)."""
    if not spans:
        return text
    mathml = {placeholder: latex_to_mathml(latex, display) for placeholder, latex, display in spans}
    latex = {placeholder: source for placeholder, source, _ in spans}
    pattern = re.compile("|".join(re.escape(placeholder) for placeholder in mathml))
    pieces = re.split(r"(<[^>]*>)", text)
    for index, piece in enumerate(pieces):
        if piece.startswith("<"):
            pieces[index] = pattern.sub(
                lambda m: html.escape("-".join(latex[m.group(0)].split()), quote=True), piece
            )
        else:
            pieces[index] = pattern.sub(lambda m: mathml[m.group(0)], piece)
    return "".join(pieces)


def latex_to_mathml(latex, display=False):
    """One LaTeX formula (without its $ delimiters) -> a ``<math>`` element, as a string, whose
    ``alttext`` is the LaTeX. Raises MathError naming the formula if it cannot be converted or
    uses a command latex2mathml does not know."""
    if not isinstance(latex, str) or not latex.strip():
        raise ValueError(f"latex: expected a non-empty str, got {latex!r}")
    from latex2mathml.converter import convert  # the [docs] extra

    try:
        source = _MISSING_NAMES.sub(r"\\operatorname{\1}", latex)
        root = ET.fromstring(convert(source, display="block" if display else "inline"))
    except Exception as error:  # latex2mathml raises its own exception types, and IndexError
        raise MathError(
            f"latex: expected a formula latex2mathml can convert, got {latex!r} "
            f"({type(error).__name__}: {error})"
        ) from None
    unknown = [
        el.text for el in root.iter() if el.text and re.fullmatch(r"\\[A-Za-z]+", el.text.strip())
    ]
    if unknown:
        raise MathError(
            f"latex: expected commands latex2mathml knows, got {unknown[0]} in {latex!r}"
        )
    _repair(root)
    root.set("alttext", latex)
    text = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    return text.replace(f' xmlns="{MATHML}"', "", 1)


def _tag(element):
    return element.tag.rsplit("}", 1)[-1]


def _new(name, text=None, **attributes):
    element = ET.Element(f"{{{MATHML}}}{name}", {k: str(v) for k, v in attributes.items()})
    element.text = text
    return element


def _styled(text, variant):
    """Each character of ``text`` in a Unicode math alphabet (𝔼 for double-struck E), where
    Unicode has one; other characters unchanged."""
    style = _ALPHABETS[variant]
    out = []
    for char in text:
        name = unicodedata.name(char, "")
        name = re.sub(r"^(LATIN|GREEK) (CAPITAL|SMALL) LETTER ", r"\2 ", name)
        for candidate in (
            f"MATHEMATICAL {style} {name}",
            f"{_LETTERLIKE.get(style, style)} {name}",
            _LETTERLIKE.get(f"{style} {name}", ""),
        ):
            try:
                out.append(unicodedata.lookup(candidate))
                break
            except KeyError:
                continue
        else:
            out.append(char)
    return "".join(out)


def _is_function_name(element):
    """An upright multi-letter identifier (log, exp, max, Var), or one with a sub/superscript."""
    if _tag(element) in ("msub", "msup", "msubsup", "munder", "mover", "munderover"):
        element = element[0]
    return (
        _tag(element) == "mi"
        and element.text is not None
        and len(element.text) > 1
        and element.text.isalpha()
    )


def _repair(root):
    for element in root.iter():
        variant = element.get("mathvariant")
        if variant in _ALPHABETS and element.text:
            element.text = _styled(element.text, variant)
            del element.attrib["mathvariant"]
        # \operatorname{Var}, \max: latex2mathml writes <mo>Var</mo>, spaced as a relation
        if _tag(element) == "mo" and element.text and len(element.text) > 1:
            if element.text.isalpha():
                element.tag = f"{{{MATHML}}}mi"
        # \sim: latex2mathml writes <mi>~</mi>, an ASCII tilde set as a letter
        if _tag(element) == "mi" and element.text == "~":
            element.tag, element.text = f"{{{MATHML}}}mo", "∼"
        # \hat: an ASCII caret over the letter, drawn high and large; U+02C6 is the accent
        # glyph, which Chromium centres on the letter (U+0302 stretches over it, like \widehat)
        if _tag(element) == "mover" and element.get("accent") == "true" and len(element) == 2:
            if _tag(element[1]) == "mo" and element[1].text == "^":
                element[1].text = "ˆ"
        # \big), \Big|, \Big/: MathML Core stretches to minsize only an operator that is
        # stretchy (a bar inside a row, a slash are not by default); TeX sets them unspaced
        if _tag(element) == "mo" and element.get("minsize"):
            element.attrib.update(stretchy="true", lspace="0", rspace="0")
    for parent in list(root.iter()):
        children = list(parent)
        for index, child in enumerate(children):
            # \Big)^{-1}: Chromium does not stretch an <mo> that is the base of a script; it
            # does one wrapped in an <mrow>
            if _tag(child) in _SCRIPTED and _tag(child[0]) == "mo" and child[0].get("minsize"):
                base = _new("mrow")
                base.append(child[0])
                child.remove(child[0])
                child.insert(0, base)
            # f' is <msup>f ′</msup>: the prime glyph is already raised, so it goes beside f
            if (
                _tag(child) == "msup"
                and len(child) == 2
                and child[1].text
                and set(child[1].text) <= _PRIMES
                and len(child[1]) == 0
            ):
                prime = _new("mo", child[1].text, lspace="0", rspace="0")
                replacement = _new("mrow")
                replacement.extend([child[0], prime])
                parent.remove(child)
                parent.insert(index, replacement)
        if _tag(parent) not in _ROWS:
            continue
        _space_row(parent)


def _space_row(row):
    """TeX's spacing in one row of math: a thin space on each side of a function name (x log σ,
    log p(x), max_i x, log |det J|) where no operator spaces it already; a sign that starts the
    row or follows an operator is a prefix (≈ −90, e^{−|t|}), not a binary minus."""
    children = list(row)
    for index, child in enumerate(children):
        before = children[index - 1] if index else None
        if (
            _tag(child) == "mo"
            and child.text in _SIGNS
            and (before is None or (_tag(before) == "mo" and before.text not in _CLOSING))
        ):
            child.set("form", "prefix")
    for index in reversed(range(len(children))):  # from the end: inserting shifts what follows
        if not _is_function_name(row[index]):
            continue
        after = row[index + 1] if index + 1 < len(row) else None
        before = row[index - 1] if index else None
        if after is not None and not _spaces(after):
            row.insert(index + 1, _new("mspace", width="0.1667em"))
        if before is not None and not _spaces(before):
            row.insert(index, _new("mspace", width="0.1667em"))


def _spaces(element):
    """Whether an element spaces a function name beside it already: a space, or an operator
    other than a \\big delimiter (which TeX sets as an ordinary symbol: log |det J|)."""
    return _tag(element) == "mspace" or (_tag(element) == "mo" and not element.get("minsize"))
