"""CSS inlining with premailer, and which rules may be inlined at all.

The same function inlines a template once per version (on its protected source) and, in tests and the
benchmark, a rendered email (the naive way). Only rules whose effect cannot depend on what a render produces
are inlined: type, class and id selectors joined by descendant or child combinators. Pseudo-classes
(``tr:nth-child(even) td``, ``a:hover``), sibling combinators, attribute and universal selectors, and at-rules
(``@media``) stay in a ``<style>`` element: inlined on a template row, ``:nth-child(even)`` would repeat on
every rendered row.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import cssutils
from lxml import etree
from premailer import Premailer

_STATIC_SELECTOR = re.compile(r"[A-Za-z0-9_\-#.\s>]+")
# A doctype, possibly after comments (a protected {% set %} before it).
_DOCTYPE = re.compile(r"\s*(?:<!--.*?-->\s*)*<!doctype", re.IGNORECASE | re.DOTALL)
_KEEP = "data-premailer"

cssutils.log.setLevel(logging.CRITICAL)


def is_static_selector(selector: str) -> bool:
    return bool(_STATIC_SELECTOR.fullmatch(selector.strip()))


def split_rules(css: str) -> tuple[str, str]:
    """``(inlinable, kept)`` CSS text."""
    sheet = cssutils.parseString(css, validate=False)
    inlinable: list[str] = []
    kept: list[str] = []
    for rule in sheet.cssRules:
        if rule.type == rule.COMMENT:
            continue
        if rule.type != rule.STYLE_RULE:
            kept.append(rule.cssText)
            continue
        selectors = [selector.selectorText for selector in rule.selectorList]
        declarations = rule.style.cssText
        static = [selector for selector in selectors if is_static_selector(selector)]
        dynamic = [selector for selector in selectors if not is_static_selector(selector)]
        if static:
            inlinable.append(f"{', '.join(static)} {{{declarations}}}")
        if dynamic:
            kept.append(f"{', '.join(dynamic)} {{{declarations}}}")
    return "\n".join(inlinable), "\n".join(kept)


def parse_document(html: str) -> tuple[Any, bool]:
    """The parsed document and whether it had a doctype to keep."""
    tree = etree.fromstring(html.strip() or "<html></html>", etree.HTMLParser()).getroottree()
    return tree, bool(_DOCTYPE.match(html))


def serialize_document(tree: Any, keep_doctype: bool) -> str:
    if keep_doctype:
        return etree.tostring(tree, method="html", encoding="unicode", pretty_print=True)
    # Without a doctype to keep, the root element and the comments around it (protected tags).
    root = tree.getroot()
    nodes = [*reversed(list(root.itersiblings(preceding=True))), root, *root.itersiblings()]
    return "".join(etree.tostring(node, method="html", encoding="unicode", pretty_print=True) for node in nodes)


def inline_tree(tree: Any) -> None:
    """Inline the inlinable rules of every ``<style>`` into ``style`` attributes; keep the rest in ``<style>``."""
    root = tree.getroot()
    for style in list(root.iter("style")):
        media = style.get("media")
        if style.get(_KEEP) is not None or (media and media not in ("all", "screen")):
            continue
        inlinable, kept = split_rules(style.text or "")
        style.text = inlinable
        if kept:
            keeper = etree.Element("style", {_KEEP: "ignore"})
            keeper.text = kept
            keeper.tail = style.tail
            style.tail = None
            style.addnext(keeper)
    Premailer(
        root,
        allow_network=False,
        disable_validation=True,
        disable_link_rewrites=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


def inline_css(html: str) -> str:
    """Render-then-inline, for comparison: inlines a finished email."""
    tree, keep_doctype = parse_document(html)
    inline_tree(tree)
    return serialize_document(tree, keep_doctype)
