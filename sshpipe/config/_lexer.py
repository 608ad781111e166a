"""Lossless lexing of OpenSSH client config text.

Every physical line becomes a :class:`Line` that keeps its exact text, so that
``"".join(line.text for line in lines)`` gives back the input byte for byte.
On top of the raw text each line carries what OpenSSH itself reads from it:
the keyword (the way ``strdelim()`` finds it, with one optional ``=``), the
arguments (the way ``argv_split()`` splits them, with quotes and backslash
escapes removed and a ``#`` at the start of a word ending the line), and the
"rest of line" text that ProxyCommand-style options take verbatim.  Offsets of
the keyword and of the value are kept so that edits can replace a value and
leave indentation, separators, comments and line ends alone.
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

__all__ = ["Line", "LexError", "split_lines", "lex_line", "lex", "argv_split", "quote_arg",
           "strdelim_words"]

# OpenSSH's WHITESPACE is " \t\r\n"; trailing white space also includes \f.
_WS = " \t\r\n"
_TRAIL = " \t\r\n\f"


class LexError(ValueError):
    """A line OpenSSH cannot split (for example an unbalanced quote)."""


class Line:
    """One physical line and what OpenSSH reads from it.

    ``keyword`` is None for blank and comment lines.  ``args`` are the words
    after the keyword; ``rest`` is the raw text after the keyword and its
    separator (used by ProxyCommand, LocalCommand, RemoteCommand,
    KnownHostsCommand and ProxyJump, which OpenSSH takes verbatim).
    ``error`` holds a lexing problem (reported when the line is compiled, so
    that a lossless parse of a broken file is still possible).  Offsets into
    ``text``: the keyword span and the value span (the value ends before
    trailing white space and any comment that ends the line).
    """

    __slots__ = ("text", "lineno", "keyword", "args", "rest", "error", "kw_start", "kw_end",
                 "value_start", "value_end", "plain")

    def __init__(self, text: str, lineno: int, keyword: Optional[str] = None,
                 args: Optional[List[str]] = None, rest: str = "", error: Optional[str] = None,
                 kw_start: int = 0, kw_end: int = 0, value_start: int = 0, value_end: int = 0):
        self.text = text
        self.lineno = lineno
        self.keyword = keyword
        self.args = args if args is not None else []
        self.rest = rest
        self.error = error
        self.kw_start = kw_start
        self.kw_end = kw_end
        self.value_start = value_start
        self.value_end = value_end
        # plain words only: ``args`` is ``rest.split()`` (the compile cache's key)
        self.plain = False

    def __repr__(self) -> str:
        return f"Line({self.text!r}, {self.lineno}, keyword={self.keyword!r}, args={self.args!r})"

    @property
    def key(self) -> Optional[str]:
        """Lower-case keyword, as OpenSSH compares it."""
        return self.keyword.lower() if self.keyword is not None else None

    @property
    def eol(self) -> str:
        """The line ending of this line ("\\r\\n", "\\n" or "")."""
        if self.text.endswith("\r\n"):
            return "\r\n"
        if self.text.endswith("\n"):
            return "\n"
        return ""

    @property
    def indent(self) -> str:
        """Leading white space before the keyword (or before a comment)."""
        body = self.text
        n = len(body) - len(body.lstrip(" \t"))
        return body[:n]


def split_lines(text: str) -> List[str]:
    """Split ``text`` into physical lines, each keeping its own line end."""
    # OpenSSH reads with getline(): only "\n" ends a line ("\r" stays part of
    # it and is later stripped as trailing white space).
    return _split_nl(text)


def _split_nl(text: str) -> List[str]:
    # A lone "\r" is not a line end for OpenSSH (getline splits on "\n" only).
    parts = text.split("\n")
    out = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def argv_split(s: str, start: int = 0) -> Tuple[List[str], List[Tuple[int, int]], Optional[int]]:
    """Split ``s[start:]`` like OpenSSH's ``argv_split(..., terminate_on_comment=1)``.

    Returns the words, their (start, end) spans in ``s``, and the offset of a
    comment that ended the line (or None).  Raises LexError on a missing
    closing quote.
    """
    words: List[str] = []
    spans: List[Tuple[int, int]] = []
    i = start
    n = len(s)
    while i < n:
        c = s[i]
        if c == " " or c == "\t":
            i += 1
            continue
        if c == "#":
            return words, spans, i
        quote = ""
        buf = []
        begin = i
        while i < n:
            c = s[i]
            if c == "\\":
                nxt = s[i + 1] if i + 1 < n else ""
                if nxt in ("'", '"', "\\") and nxt != "" or (quote == "" and nxt == " "):
                    buf.append(nxt)
                    i += 2
                    continue
                buf.append(c)
                i += 1
            elif quote == "" and (c == " " or c == "\t"):
                break
            elif quote == "" and (c == '"' or c == "'"):
                quote = c
                i += 1
            elif quote != "" and c == quote:
                quote = ""
                i += 1
            else:
                buf.append(c)
                i += 1
        if quote:
            raise LexError("invalid quotes")
        words.append("".join(buf))
        spans.append((begin, i))
    return words, spans, None


def _strdelim(s: str, pos: int) -> Tuple[Optional[str], Optional[int], str]:
    """OpenSSH ``strdelim()`` with ``=`` splitting, on an immutable string.

    Returns (token, next position or None, possibly rewritten string): a
    quoted keyword has its opening quote removed, as the C code does.
    """
    old = pos
    i = pos
    n = len(s)
    while i < n and s[i] not in ' \t\r\n"=':
        i += 1
    if i >= n:
        return s[old:], None, s
    if s[i] == '"':
        s = s[:i] + s[i + 1:]
        j = s.find('"', i)
        if j < 0:
            return None, None, s
        tok = s[old:j]
        k = j + 1
        while k < len(s) and s[k] in _WS:
            k += 1
        return tok, k, s
    wspace = s[i] == "="
    tok = s[old:i]
    k = i + 1
    while k < n and s[k] in _WS:
        k += 1
    if k < n and s[k] == "=" and not wspace:
        k += 1
        while k < n and s[k] in _WS:
            k += 1
    return tok, k, s


# A line made only of plain words separated by spaces or tabs: no quote,
# backslash, "=", "#" or other white space.  Most lines of real files are
# like this, and for them str.split() gives exactly what argv_split() gives.
_PLAIN = re.compile(r"([ \t]*)([^\s\"'\\=#]+)(?:[ \t]+([^\s\"'\\=#]+(?:[ \t]+[^\s\"'\\=#]+)*))?")


def lex_line(text: str, lineno: int) -> Line:
    """Read one physical line the way ``process_config_line_depth()`` does."""
    line = Line(text, lineno)
    body = text
    if "\0" in body:
        # ssh works on C strings: a NUL ends what it sees of the line
        body = body[:body.index("\0")]
    body = body.rstrip(_TRAIL)
    if not body:
        return line
    m = _PLAIN.fullmatch(body)
    if m is not None:
        kw_start = m.end(1)
        line.keyword = m.group(2)
        line.kw_start = kw_start
        line.kw_end = m.end(2)
        words = m.group(3)
        if words is None:
            line.value_start = line.value_end = len(body)
            return line
        line.value_start = m.start(3)
        line.value_end = len(body)
        line.rest = words
        line.args = words.split()
        return line
    tok, pos, s = _strdelim(body, 0)
    kw_start = 0
    if tok == "" and pos is not None:
        kw_start = pos
        tok, pos, s = _strdelim(s, pos)
    if tok is None or tok == "" or tok.startswith("#"):
        return line
    line.keyword = tok
    line.kw_start = kw_start
    line.kw_end = kw_start + len(tok)
    if s is not body:
        # A quoted keyword ("Port" 22): strdelim() dropped the opening quote,
        # so positions after it are one less than in the real text.
        line.kw_end = kw_start + len(tok) + 2
        if pos is not None:
            pos += 1
    if pos is None or pos >= len(body):
        line.value_start = line.value_end = len(body)
        return line
    line.value_start = pos
    line.value_end = len(body)
    rest = body[pos:]
    line.rest = rest.lstrip(" \t\r\n=")
    try:
        words, spans, comment = argv_split(body, pos)
    except LexError as exc:
        line.error = str(exc)
        return line
    line.args = words
    if spans:
        line.value_end = spans[-1][1]
    return line


def strdelim_words(line: Line) -> List[Optional[str]]:
    """The words OpenSSH 9.2's ``match_cfg_line()`` reads with ``strdelim()``.

    Unlike ``argv_split()``: "=" separates words too, only double quotes
    group (no backslash escapes), and a word may join quoted and unquoted
    parts.  None stands for an unmatched quote (strdelim's NULL).
    """
    body = line.text
    if "\0" in body:
        body = body[:body.index("\0")]
    body = body.rstrip(_TRAIL)
    pos: Optional[int] = line.value_start
    words: List[Optional[str]] = []
    s = body
    while pos is not None and pos < len(s):
        tok, pos, s = _strdelim(s, pos)
        if tok is None:
            words.append(None)
            break
        if tok == "":
            break
        words.append(tok)
    return words


# The plain-line regex with the line's trailing white space and line end in it:
# one call per line decides the fast path and gives every offset.
_PLAIN_EOL = re.compile(
    r"([ \t]*)([^\s\"'\\=#]+)(?:[ \t]+([^\s\"'\\=#]+(?:[ \t]+[^\s\"'\\=#]+)*))?[ \t\r\n\f]*")


def lex(text: str) -> List[Line]:
    """Lex a whole file; the lines' texts join back to ``text`` exactly."""
    out: List[Line] = []
    append = out.append
    plain = _PLAIN_EOL.fullmatch
    new = Line.__new__
    nul = "\0" in text
    lineno = 0
    for t in split_lines(text):
        lineno += 1
        if nul:
            append(lex_line(t, lineno))
            continue
        if not t.rstrip(_TRAIL):
            line = new(Line)
            line.text = t
            line.lineno = lineno
            line.keyword = line.error = None
            line.args = []
            line.rest = ""
            line.plain = False
            line.kw_start = line.kw_end = line.value_start = line.value_end = 0
            append(line)
            continue
        m = plain(t)
        if m is None:
            append(lex_line(t, lineno))
            continue
        indent, keyword, words = m.groups()
        line = new(Line)
        line.text = t
        line.lineno = lineno
        line.keyword = keyword
        line.error = None
        line.plain = True
        ks = len(indent)
        line.kw_start = ks
        line.kw_end = ke = ks + len(keyword)
        if words is None:
            line.args = []
            line.rest = ""
            line.value_start = line.value_end = ke
        else:
            line.args = words.split()
            line.rest = words
            vs = m.start(3)
            line.value_start = vs
            line.value_end = vs + len(words)
        append(line)
    return out


_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_~*?!^$[]{}()")


def quote_arg(value: str) -> str:
    """Quote one word so that ``argv_split`` gives ``value`` back."""
    if value and all(c in _SAFE for c in value) and not value.startswith("#"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
