"""Turn lexed lines into typed blocks, once per file and OpenSSH release.

A file becomes a list of :class:`Block` objects: the lines before the first
Host/Match, then one block per Host or Match line.  Each directive inside a
block is already checked and converted (see ``_options``), so resolving a host
only walks blocks, tests a precompiled header, and copies values.  Blocks
whose directives must be looked at even when the block does not apply
(``Include``, unknown keywords that IgnoreUnknown may cover, paths and
forwards whose ``${ENV}`` OpenSSH expands while reading, StreamLocalBindMask,
which OpenSSH sets regardless of the block) are flagged ``scan`` so the
resolver does not skip them.

Which keywords and Match criteria exist depends on the release
(:mod:`._versions`): a keyword newer than the chosen release is the same
"Bad configuration option" ssh gives.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Pattern, Tuple

from sshpipe.config._lexer import Line, strdelim_words
from sshpipe.config._options import UNSET, BadValue, OptionTable, options_for
from sshpipe.config._patterns import HostPatterns, PatternList, cidr_list_valid, glob_to_regex
from sshpipe.config._versions import OpenSSH

__all__ = [
    "Block",
    "CompiledFile",
    "Problem",
    "compile_lines",
    "MatchCriterion",
    "OP_FIRST", "OP_ACCUM", "OP_FORWARD", "OP_SENDENV", "OP_SETENV", "OP_JUMP",
    "OP_FWDAGENT", "OP_REKEY", "OP_INCLUDE", "OP_UNKNOWN", "OP_ENVCHECK", "OP_LAST_ALWAYS",
    "OP_LOGVERBOSE", "OP_FORWARD_ENV", "OP_FIRST_LIMITED", "SCAN_OPS",
]

# Directive op codes (small ints: the resolver dispatches on them through a table).
OP_FIRST = 0        # (op, name, value)                    first value wins
OP_ACCUM = 1        # (op, name, value, lineno)            append unless present (max 100)
OP_FORWARD = 2      # (op, name, fwd)                      append unless an equal forward is there
OP_SENDENV = 3      # (op, name, [words])                  "-pat" removes, others append
OP_SETENV = 4       # (op, name, [words])                  first SetEnv line wins
OP_JUMP = 5         # (op, name, jump tuple)
OP_FWDAGENT = 6     # (op, name, (flag, path))
OP_REKEY = 7        # (op, name, (limit, interval))
OP_INCLUDE = 8      # (op, [patterns], lineno)             evaluated active or not
OP_UNKNOWN = 9      # (op, keyword, lineno)                evaluated active or not
OP_ENVCHECK = 10    # (op, value, lineno)                  evaluated active or not
OP_LAST_ALWAYS = 11  # (op, name, value)                   last wins, active or not
OP_LOGVERBOSE = 12  # (op, name, [words])
OP_FORWARD_ENV = 13  # (op, name, (spec, dynamic, remote), lineno)  ${ENV} expanded on reading
OP_FIRST_LIMITED = 14  # (op, name, reason, lineno)        would be first: a limit is exceeded

#: One compiled directive: an op code, then the fields the table above gives.
Item = Tuple[Any, ...]

# What the resolver still evaluates in a block that does not apply.
SCAN_OPS = frozenset({OP_INCLUDE, OP_UNKNOWN, OP_ENVCHECK, OP_LAST_ALWAYS, OP_FORWARD_ENV})

# OpenSSH's SSH_MAX_IDENTITY_FILES / SSH_MAX_CERTIFICATE_FILES, SSH_MAX_HOSTS_FILES
# and (9.2) MAX_CANON_DOMAINS.
MAX_IDENTITY_FILES = 100
MAX_HOSTS_FILES = 32
MAX_CANON_DOMAINS = 32


@dataclass
class Problem:
    """One thing OpenSSH would reject, with where it is."""

    reason: str
    path: Optional[str]
    line: Optional[int]
    # set for an unknown keyword: whether it is an error depends on the
    # IgnoreUnknown seen before it, possibly in another file
    keyword: Optional[str] = None


@dataclass
class MatchCriterion:
    """One ``Match`` criterion: attribute, negation and compiled argument."""

    attr: str
    negate: bool
    arg: Optional[str] = None
    patterns: Optional[PatternList] = None


@dataclass
class Block:
    """Lines from one Host/Match line (or the file start) to the next."""

    kind: str                              # "start", "host" or "match"
    lineno: int
    host: Optional[HostPatterns] = None
    match: Optional[List[MatchCriterion]] = None
    match_all: Optional[bool] = None       # "Match all" / "Match !all"
    items: List[Item] = field(default_factory=list)
    scan: bool = False


@dataclass
class CompiledFile:
    """A parsed file: its lines (for dumps and edits) and its blocks."""

    path: Optional[str]
    lines: List[Line]
    blocks: List[Block]
    problems: List[Problem]
    version: Optional[OpenSSH] = None
    _index: Optional["BlockIndex"] = None

    def index(self) -> "BlockIndex":
        """The lookup index over Host blocks (built on first use)."""
        if self._index is None:
            self._index = BlockIndex(self.blocks)
        return self._index


class BlockIndex:
    """Which blocks a host name can activate, without testing every block.

    Host blocks that hold nothing OpenSSH reads when they do not apply can be
    skipped unless they match.  Plain names go into a dict (name -> blocks);
    blocks with wildcards or negations are tested one by one, behind one
    compiled pre-filter of all their positive patterns (a name no wildcard
    block could match costs one regex call); the file start, Match blocks
    (whose result depends on values set so far) and ``scan`` blocks are
    always visited, in file order.
    """

    __slots__ = ("always", "literal", "wild", "star", "_filter", "_filter_re")

    # above this many wildcard patterns the pre-filter is not built (its
    # compile time would outweigh what it saves)
    FILTER_LIMIT = 4096

    def __init__(self, blocks: List["Block"]):
        self.always: List[int] = []
        self.literal: Dict[str, List[int]] = {}
        # (index, patterns) of the blocks tested one by one
        self.wild: List[Tuple[int, HostPatterns]] = []
        self.star: List[Tuple[int, HostPatterns]] = []
        # the positive wildcard patterns, compiled into one regex on first use
        self._filter: Optional[List[str]] = None
        self._filter_re: Optional[Pattern[str]] = None
        positives: List[str] = []
        for i, b in enumerate(blocks):
            host = b.host
            if b.kind != "host" or b.scan or host is None:
                self.always.append(i)
                continue
            pats = host.patterns
            plain = [p for p in pats if not p.startswith("!") and "*" not in p and "?" not in p]
            if len(plain) == len(pats):
                for p in plain:
                    self.literal.setdefault(p, []).append(i)
            elif any(p and p == "*" * len(p) for p in pats):
                # "Host *" (maybe with negations): would defeat the pre-filter
                self.star.append((i, host))
            else:
                self.wild.append((i, host))
                positives.extend(p for p in pats if not p.startswith("!"))
        if self.wild and len(positives) <= self.FILTER_LIMIT:
            self._filter = positives

    def candidates(self, host: str) -> List[int]:
        """Indices to visit for ``host``, in file order."""
        hit = set(self.always)
        hit.update(self.literal.get(host, ()))
        for i, pats in self.star:
            if pats.match(host):
                hit.add(i)
        wild = self.wild
        if wild:
            flt = self._filter_re
            if flt is None and self._filter is not None:
                flt = self._filter_re = re.compile(
                    "(?:" + "|".join(glob_to_regex(p) for p in self._filter) + ")", re.S)
            if flt is None or flt.fullmatch(host) is not None:
                for i, pats in wild:
                    if pats.match(host):
                        hit.add(i)
        return sorted(hit)


# Criteria that take an argument, and those whose argument may be "" (10.0).
_WITH_ARG = frozenset({"host", "originalhost", "user", "localuser", "localnetwork", "exec",
                       "version", "tagged", "command", "sessiontype"})
_EQUALS_OK = frozenset({"host", "originalhost", "user", "localuser", "localnetwork", "version",
                        "tagged", "command", "exec"})
_EMPTY_OK = frozenset({"tagged", "command"})


def _compile_match(args: List[str], v: OpenSSH) -> Tuple[List[MatchCriterion], Optional[bool]]:
    crits: List[MatchCriterion] = []
    attributes = 0
    i = 0
    while i < len(args):
        oattr = args[i]
        i += 1
        if oattr.startswith("#"):
            break
        negate = oattr.startswith("!")
        attr = oattr[1:] if negate else oattr
        low = attr.lower()
        if low == "all":
            nxt = args[i] if i < len(args) else None
            if attributes > 1 or (nxt is not None and nxt != "" and not nxt.startswith("#")):
                raise BadValue(f"'{oattr}' cannot be combined with other Match attributes")
            return crits, not negate
        attributes += 1
        if low in ("canonical", "final"):
            crits.append(MatchCriterion(low, negate))
            continue
        arg: Optional[str]
        key, eq, value = attr.partition("=")
        if v.match_key_equals and eq and key.lower() in _EQUALS_OK and (
                key.lower() in v.match_criteria):
            low = key.lower()
            attr = key
            arg = value
        elif i < len(args):
            arg = args[i]
            i += 1
        else:
            if v.match_key_equals:
                raise BadValue(f"missing argument for Match '{oattr}'")
            arg = None
        if arg == "" and not (v.family >= (10, 0) and low in _EMPTY_OK):
            arg = None
        if arg is None or arg.startswith("#"):
            raise BadValue(f"Missing Match criteria for {attr}")
        if low not in _WITH_ARG or low not in v.match_criteria:
            raise BadValue(f"Unsupported Match attribute {attr}")
        crit = MatchCriterion(low, negate, arg)
        if low in ("host", "originalhost"):
            crit.patterns = PatternList(arg, lower=True)
        elif low in ("user", "localuser", "version", "tagged", "command", "sessiontype"):
            crit.patterns = PatternList(arg, lower=False)
        elif low == "localnetwork":
            if not cidr_list_valid(arg):
                raise BadValue(f"Invalid network list {arg}")
        crits.append(crit)
    if attributes == 0:
        raise BadValue("One or more attributes required for Match")
    return crits, None


def _env_refs_ok(value: str) -> Optional[str]:
    """Syntax check of ``${NAME}`` references (values are checked at resolve)."""
    i = 0
    while True:
        j = value.find("${", i)
        if j < 0:
            return None
        k = value.find("}", j + 2)
        if k < 0:
            return "unterminated ${"
        i = k + 1


# Parsed values, per option table: the same (option, words) pair parses the
# same way every time, and real files repeat a few values many times.
_CACHE_LIMIT = 8192


#: A parsed value as cached: (True, value) or (False, the BadValue).
Parsed = Tuple[bool, Any]
ParseCache = Dict[Tuple[Any, ...], Parsed]


def _parse(table: OptionTable, cache: ParseCache, canon: str, ln: Line) -> Parsed:
    key: Tuple[Any, ...] = (canon, ln.rest) if ln.plain else (canon, tuple(ln.args), ln.rest)
    got: Optional[Parsed] = cache.get(key)
    if got is None:
        try:
            got = (True, table.options[canon].parse(ln.args, ln.rest, canon))
        except BadValue as exc:
            got = (False, exc)
        if len(cache) < _CACHE_LIMIT:
            cache[key] = got
    return got


_CACHES: Dict[int, ParseCache] = {}


def compile_lines(lines: List[Line], path: Optional[str], version: OpenSSH) -> CompiledFile:
    """Compile lexed lines for ``version``; problems are collected, not raised."""
    table = options_for(version)
    keywords = table.keywords
    options = table.options
    cache = _CACHES.setdefault(id(table), {})
    blocks = [Block("start", 0)]
    problems: List[Problem] = []
    cur = blocks[0]
    limit_canon = version.canon_limits_32
    for ln in lines:
        if ln.keyword is None:
            continue
        key = ln.keyword.lower()
        lineno = ln.lineno
        if not ln.args and ln.rest == "" and ln.error is None:
            problems.append(Problem(f'no argument after keyword "{key}"', path, lineno))
            continue
        canon = keywords.get(key)
        if canon is None:
            if ln.error is not None:
                # argv_split() runs on every line, even one IgnoreUnknown covers
                problems.append(Problem(ln.error, path, lineno))
                continue
            problems.append(Problem(f"Bad configuration option: {key}", path, lineno, key))
            cur.items.append((OP_UNKNOWN, key, lineno))
            cur.scan = True
            continue
        if ln.error is not None:
            problems.append(Problem(ln.error, path, lineno))
            continue
        mode = options[canon].mode
        if mode == "host":
            pats = []
            err = False
            for a in ln.args:
                if a == "":
                    problems.append(Problem("keyword host empty argument", path, lineno))
                    err = True
                    break
                pats.append(a)
            cur = Block("host", lineno, host=HostPatterns([] if err else pats))
            blocks.append(cur)
            continue
        if mode == "match":
            words: List[str] = ln.args
            if not version.match_argv:
                # 9.2 reads Match words with strdelim(), not argv_split();
                # None stands for an unmatched quote, where strdelim() stops
                raw_words = strdelim_words(ln)
                words = []
                for w in raw_words:
                    if w is None:
                        break
                    words.append(w)
            try:
                crits, allv = _compile_match(words, version)
            except BadValue as exc:
                problems.append(Problem(str(exc), path, lineno))
                crits, allv = [], False
            cur = Block("match", lineno, match=crits, match_all=allv)
            blocks.append(cur)
            continue
        if mode in ("ignore", "deprecated", "unsupported"):
            continue
        got = cache.get((canon, ln.rest) if ln.plain else (canon, tuple(ln.args), ln.rest))
        if got is None:
            got = _parse(table, cache, canon, ln)
        ok: bool = got[0]
        value: Any = got[1]
        if not ok:
            msg = str(value)
            if msg == "extra arguments at end of line":
                msg = f"keyword {key} extra arguments at end of line"
            problems.append(Problem(msg, path, lineno))
            continue
        items = cur.items
        if mode == "first":
            if value is UNSET:
                continue
            if canon in _FIRST_SPECIAL:
                _FIRST_SPECIAL[canon](cur, canon, key, value, lineno, path, problems,
                                      limit_canon)
            else:
                items.append((OP_FIRST, canon, value))
        elif mode == "accum":
            items.append((OP_ACCUM, canon, value, lineno))
        elif mode == "forward":
            if isinstance(value, tuple) and value[0] == "env":
                items.append((OP_FORWARD_ENV, canon, value[1:], lineno))
                cur.scan = True
            else:
                items.append((OP_FORWARD, canon, value))
        elif mode == "include":
            items.append((OP_INCLUDE, value, lineno))
            cur.scan = True
        elif mode == "sendenv":
            items.append((OP_SENDENV, canon, value))
        elif mode == "proxyjump":
            items.append((OP_JUMP, canon, value))
        elif mode == "forwardagent":
            if value[1] is not None:
                problem = _agent_path_problem(value[1])
                if problem:
                    problems.append(Problem(problem, path, lineno))
                    continue
                if "${" in value[1]:
                    items.append((OP_ENVCHECK, value[1], lineno))
                    cur.scan = True
            items.append((OP_FWDAGENT, canon, value))
        elif mode == "rekeylimit":
            items.append((OP_REKEY, canon, value))
    return CompiledFile(path, lines, blocks, problems, version)


# How a "first" option with a special rule adds its value to the block:
# (block, canonical name, keyword as written, value, line, path, problems,
#  whether per-name limits apply).
FirstAdder = Callable[[Block, str, str, Any, int, Optional[str], List[Problem], bool], None]


def _first_identityagent(cur: Block, canon: str, key: str, value: Any, lineno: int,
                         path: Optional[str], problems: List[Problem],
                         limit_canon: bool) -> None:
    problem = _agent_path_problem(value)
    if problem:
        problems.append(Problem(problem, path, lineno))
        return
    if "${" in value:
        cur.items.append((OP_ENVCHECK, value, lineno))
        cur.scan = True
    cur.items.append((OP_FIRST, canon, value))


def _first_bindmask(cur: Block, canon: str, key: str, value: Any, lineno: int,
                    path: Optional[str], problems: List[Problem], limit_canon: bool) -> None:
    cur.items.append((OP_LAST_ALWAYS, canon, value))
    cur.scan = True


def _first_op(op: int) -> FirstAdder:
    def add(cur: Block, canon: str, key: str, value: Any, lineno: int,
            path: Optional[str], problems: List[Problem], limit_canon: bool) -> None:
        cur.items.append((op, canon, value))
    return add


def _first_limited(limit: int, reason: str, per_canon: bool) -> FirstAdder:
    """A list option with an entry limit checked only where it would be taken."""
    def add(cur: Block, canon: str, key: str, value: Any, lineno: int,
            path: Optional[str], problems: List[Problem], limit_canon: bool) -> None:
        if len(value) > limit and (limit_canon or not per_canon):
            cur.items.append((OP_FIRST_LIMITED, canon, reason.format(key=key), lineno))
        else:
            cur.items.append((OP_FIRST, canon, value))
    return add


_FIRST_SPECIAL: Dict[str, FirstAdder] = {
    "identityagent": _first_identityagent,
    "streamlocalbindmask": _first_bindmask,
    "setenv": _first_op(OP_SETENV),
    "logverbose": _first_op(OP_LOGVERBOSE),
    "canonicaldomains": _first_limited(MAX_CANON_DOMAINS, "too many hostname suffixes.", True),
    "canonicalizepermittedcnames": _first_limited(MAX_CANON_DOMAINS,
                                                  "too many permitted CNAMEs.", True),
    "userknownhostsfile": _first_limited(MAX_HOSTS_FILES, "too many {key} entries.", False),
    "globalknownhostsfile": _first_limited(MAX_HOSTS_FILES, "too many {key} entries.", False),
}


def _agent_path_problem(arg: str) -> Optional[str]:
    err = _env_refs_ok(arg)
    if err:
        return f"Invalid environment expansion {arg}."
    if arg.startswith("$") and not arg.startswith("${"):
        name = arg[1:]
        if not (name and all(c.isalnum() or c == "_" for c in name) and name.isascii()):
            return f"Invalid environment name {arg}."
    return None
