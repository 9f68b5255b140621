"""How text from models reaches the places people read it: one function per sink.

Layer, tensor and operator names come from model files, and check names and model paths from
test code; any of them can hold control characters.  Written raw, an ESC sequence clears the
terminal or sets its title, ``\\r`` and ``\\x08`` overwrite what was printed, a line break
followed by ``::notice::`` is a GitHub workflow command, and ``|`` or ``<script>`` break or
inject into Markdown.  Every writer of human-readable output passes names through the function
of its sink:

- ``terminal(text)``: a value inside a line of terminal output (a name, an operator);
- ``terminal_lines(text)``: a block of terminal output, line breaks kept (the safety net for
  whole messages, applied last);
- ``annotation_data(text)`` and ``annotation_property(text)``: the message and the properties
  (``file=``, ``title=``) of a GitHub workflow command, escaped as GitHub documents;
- ``markdown(text)``: text in GitHub-flavoured Markdown (a table cell, a list item);
- ``mermaid(text)``: a quoted string in a Mermaid chart inside Markdown.

Each is idempotent on what it has already escaped, so a name escaped for the terminal can be
escaped again by a block without doubling.  The JSON report and baselines keep the real names:
they are data, not display.
"""

from __future__ import annotations

import re

#: Characters no name may write raw: C0 controls (line breaks and tab too), DEL, C1 controls
#: (``\x9b`` is CSI on some terminals), the Unicode line and paragraph separators, the
#: bidirectional overrides and isolates (they reorder what is shown), and lone surrogates
#: (from names that are not UTF-8: they cannot be encoded for the terminal).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_IN_BLOCK = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                              "\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# GitHub's runner takes a line as a command when it starts with "::" (after white space) or
# holds "##[" anywhere (the older syntax).
_COMMAND_START = re.compile(r"^(\s*):(?=:)", re.MULTILINE)
_OLD_COMMAND = "##["


def _visible(char: str) -> str:
    """The escape a person reads: ``\\x1b``, ``\\r``, ``\\u202e``, ``\\udc80``."""
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _controls(text: str, pattern: re.Pattern[str] = _UNSAFE) -> str:
    return pattern.sub(lambda m: _visible(m[0]), text)


def _no_commands(text: str) -> str:
    text = text.replace(_OLD_COMMAND, "##\\x5b")
    return _COMMAND_START.sub(lambda m: m[1] + "\\x3a", text) if "::" in text else text


def terminal(text: object) -> str:
    """A value for one line of terminal output: every control character shown as its escape."""
    return _no_commands(_controls(str(text)))


def terminal_lines(text: str) -> str:
    """A block of terminal output: its line breaks kept, every other control character
    escaped, and no line that GitHub's runner would take for a workflow command."""
    return _no_commands(_controls(text, _UNSAFE_IN_BLOCK))


def annotation_data(text: object) -> str:
    """The message of a workflow command (after the second ``::``): ``%``, CR and LF as GitHub
    documents them (``%25``, ``%0D``, ``%0A``), other control characters as for the terminal."""
    escaped = str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return _controls(escaped).replace(_OLD_COMMAND, "##\\x5b")


def annotation_property(text: object) -> str:
    """A property value of a workflow command (``file=``, ``title=``): as the message, and ``:``
    and ``,`` too (``%3A``, ``%2C``), which would end the property or the command."""
    return annotation_data(text).replace(":", "%3A").replace(",", "%2C")


# Markdown: text made only of these is shown as it is (test ids, figures, accelerator names)...
_PLAIN = re.compile(r"[\w .,:+%=/#\[\]…-]*")
# ...unless it could still become markup: an underscore at a word's edge (emphasis), the start
# of an autolink ("www.", "https://", "mailto:").
_PLAIN_BUT = re.compile(r"(?<![^\W_])_|_(?![^\W_])|www\.|://|mailto:|xmpp:", re.IGNORECASE)
_MARKDOWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# What makes markup inline: escapes, code, emphasis, strike-through, math, links and images,
# table cells, autolinks (":" of "https://", "@" of an address, "." of "www."), HTML.
_MARKUP = re.compile(r"[\\`*_~$\[\]()!|:@<>&]|(?<=www)\.", re.IGNORECASE)


def _markdown_char(char: str) -> str:
    if char in _MARKDOWN_ENTITIES:
        return _MARKDOWN_ENTITIES[char]
    return "\\" + char


def markdown(text: object) -> str:
    """Text for GitHub-flavoured Markdown: inline, in a table cell or a list item.

    Plain text (letters, digits, ``. , : + % = / # [ ] -``) stays as it is.  Anything else has
    control characters shown as their escapes (a line break would end the table row), ``& < >``
    as HTML entities (no HTML gets through), and the characters that make inline markup
    backslash-escaped, as CommonMark allows for any ASCII punctuation: no ``|`` ends a cell, no
    ``[..](..)`` makes a link, no ``https://`` or ``www.`` an autolink, no `` ` ``, ``*``, ``_``,
    ``~`` or ``$`` formats.
    """
    value = str(text)
    if _PLAIN.fullmatch(value) and not _PLAIN_BUT.search(value):
        return value
    # markup first: the escapes _controls writes (a backslash and a letter) render as they are
    return _controls(_MARKUP.sub(lambda m: _markdown_char(m[0]), value))


_MERMAID = {'"': "#quot;", "<": "#lt;", ">": "#gt;"}


def mermaid(text: object) -> str:
    """A double-quoted Mermaid string: no line break (in Markdown, a ``\\r`` followed by a
    fence would end the chart), no quote, no angle bracket."""
    value = _controls(str(text))
    return '"' + re.sub('["<>]', lambda m: _MERMAID[m[0]], value) + '"'
