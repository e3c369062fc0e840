"""A page's main content as Markdown: the `<main>` (or the body without its navigation), cleaned of what is not
text, converted by html-to-markdown with code blocks fenced and whole, headings as headings, nothing escaped.

Sphinx, Asciidoc and DocBook pages document each function, option or term as a `<dt>` followed by paragraphs in
its `<dd>`: those terms become headings, so a chunk's heading path says what it documents ("functools.lru_cache
(maxsize=128, typed=False)") and a signature is never mistaken for a sentence of an answer.
"""

from __future__ import annotations

import lxml.html  # type: ignore[import-untyped]
from html_to_markdown import ConversionOptions, convert

# Elements that are never a page's text.
_DROPPED_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "aside",
    "form",
    "button",
    "iframe",
    "svg",
    "select",
    "textarea",
    "img",
    "picture",
    "video",
    "audio",
    "canvas",
    "object",
    "embed",
)
# Outside the main element also the site's header and footer.
_CHROME_TAGS = ("header", "footer")
# Class or id tokens of navigation and page furniture (Sphinx, DocBook, Asciidoc, common themes).
_CHROME = frozenset(
    "headerlink navheader navfooter navigation nav navbar breadcrumb breadcrumbs sphinxsidebar "
    "related footer toc skip-link skiplink cookie-banner cookies menu sidebar-nav banner "
    "docnav".split()
)
_ANCHOR_MARKS = frozenset("¶ # § 🔗 ⚓".split())
_MAX_TERM = 200  # characters: a longer <dt> stays a paragraph
_OPTIONS = ConversionOptions(
    escape_asterisks=False,
    escape_underscores=False,
    escape_misc=False,
    escape_ascii=False,
    skip_images=True,
    code_block_style="backticks",
    heading_style="atx",
    wrap=False,
)


def main_markdown(tree: lxml.html.HtmlElement) -> tuple[str, float]:
    """The Markdown of a parsed page's main content (the tree is changed), and how much of it is links (see
    `_link_share`)."""
    main = _main(tree)
    for node in list(main.iter(*_DROPPED_TAGS)):
        node.drop_tree()
    if main.tag == "body":
        for node in list(main.iter(*_CHROME_TAGS)):
            node.drop_tree()
    for node in list(main.iter()):
        if node is main or not isinstance(node.tag, str) or node.getparent() is None:
            continue
        tokens = set((node.get("class") or "").split()) | {node.get("id") or ""}
        if tokens & _CHROME or node.get("role") in ("navigation", "search"):
            node.drop_tree()
    share = _link_share(main)
    for a in list(main.iter("a")):
        if (a.text_content() or "").strip() in _ANCHOR_MARKS:
            a.drop_tree()  # the permalink mark after a heading or term
        else:
            a.drop_tag()  # a link's words stay in the sentence; its target was collected already
    _terms_as_headings(main)
    return str(convert(lxml.html.tostring(main, encoding="unicode"), _OPTIONS).content), share


def _link_share(main: lxml.html.HtmlElement) -> float:
    """The share of the text that is links, or list items, table rows and terms holding a link, whichever is
    more: an index, a table of contents or a module list (a link and a line about it per row) is nearly all."""

    def length(node: lxml.html.HtmlElement) -> int:
        return len(" ".join(node.text_content().split()))

    total = length(main) or 1
    linked = sum(length(a) for a in main.iter("a"))
    entries = sum(
        length(e)
        for e in main.iter("li", "tr", "dt")
        if e.find(".//a") is not None and not any(up.tag in ("li", "tr", "dt") for up in e.iterancestors())
    )
    return max(linked, entries) / total


def _main(tree: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    for path in ("//main", "//*[@role='main']", "//article"):
        found = tree.xpath(path)
        if len(found) == 1:
            return found[0]
    body = tree.find(".//body")
    return body if body is not None else tree


def _terms_as_headings(main: lxml.html.HtmlElement) -> None:
    """A definition list whose `<dd>`s hold paragraphs or code becomes a run of sections: each `<dt>` a heading
    (h5; h6 in a nested list), each `<dd>` its body."""
    for dl in list(main.iter("dl")):
        if not any(dd.find(".//p") is not None or dd.find(".//pre") is not None for dd in dl.iterchildren("dd")):
            continue
        level = "h6" if any(a.tag == "dl" for a in dl.iterancestors()) else "h5"
        for child in list(dl):
            if child.tag == "dt":
                term = " ".join(child.text_content().split())
                if term and len(term) <= _MAX_TERM:
                    for inner in list(child):
                        child.remove(inner)
                    child.text, child.tag = term, level
                    continue
                child.tag = "p"
            elif child.tag == "dd":
                child.tag = "div"
        dl.tag = "div"
