"""Turn lexed lines into typed blocks, once per file.

A file becomes a list of :class:`Block` objects: the lines before the first
Host/Match, then one block per Host or Match line.  Each directive inside a
block is already checked and converted (see ``_options``), so resolving a host
only walks blocks, tests a precompiled header, and copies values.  Blocks
whose directives must be looked at even when the block does not apply
(``Include``, unknown keywords that IgnoreUnknown may cover, agent paths whose
``${ENV}`` OpenSSH checks while reading, StreamLocalBindMask, which OpenSSH
sets regardless of the block) are flagged ``scan`` so the resolver does not
skip them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from sshpipe.config._lexer import Line
from sshpipe.config._options import KEYWORDS, OPTIONS, BadValue, UNSET
from sshpipe.config._patterns import HostPatterns, PatternList, cidr_list_valid

__all__ = [
    "Block",
    "CompiledFile",
    "Problem",
    "compile_lines",
    "MatchCriterion",
    "OP_FIRST", "OP_ACCUM", "OP_FORWARD", "OP_SENDENV", "OP_SETENV", "OP_JUMP",
    "OP_FWDAGENT", "OP_REKEY", "OP_INCLUDE", "OP_UNKNOWN", "OP_ENVCHECK", "OP_LAST_ALWAYS",
    "OP_LOGVERBOSE",
]

# Directive op codes (small ints: the resolver's inner loop dispatches on them).
OP_FIRST = 0        # (op, name, value)             first value wins
OP_ACCUM = 1        # (op, name, value)             append unless present
OP_FORWARD = 2      # (op, name, fwd)               append unless an equal forward is there
OP_SENDENV = 3      # (op, name, [words])           "-pat" removes, others append
OP_SETENV = 4       # (op, name, [words])           first SetEnv line wins
OP_JUMP = 5         # (op, name, jump tuple)
OP_FWDAGENT = 6     # (op, name, (flag, path))
OP_REKEY = 7        # (op, name, (limit, interval))
OP_INCLUDE = 8      # (op, [patterns], lineno)      always evaluated
OP_UNKNOWN = 9      # (op, keyword, lineno)         always evaluated
OP_ENVCHECK = 10    # (op, value, lineno)           always evaluated
OP_LAST_ALWAYS = 11  # (op, name, value)            last wins, active or not
OP_LOGVERBOSE = 12  # (op, name, [words])

ALWAYS_OPS = frozenset({OP_INCLUDE, OP_UNKNOWN, OP_ENVCHECK, OP_LAST_ALWAYS})


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
    items: List[tuple] = field(default_factory=list)
    scan: bool = False


@dataclass
class CompiledFile:
    """A parsed file: its lines (for dumps and edits) and its blocks."""

    path: Optional[str]
    lines: List[Line]
    blocks: List[Block]
    problems: List[Problem]
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
    blocks with wildcards or negations are tested one by one; the file start,
    Match blocks (whose result depends on values set so far) and ``scan``
    blocks are always visited, in file order.
    """

    __slots__ = ("always", "literal", "wild")

    def __init__(self, blocks: List["Block"]):
        self.always: List[int] = []
        self.literal: dict = {}
        self.wild: List[int] = []
        for i, b in enumerate(blocks):
            if b.kind != "host" or b.scan:
                self.always.append(i)
                continue
            pats = b.host.patterns
            plain = [p for p in pats if not p.startswith("!") and "*" not in p and "?" not in p]
            if len(plain) == len(pats):
                for p in plain:
                    self.literal.setdefault(p, []).append(i)
            else:
                self.wild.append(i)

    def candidates(self, blocks: List["Block"], host: str) -> List[int]:
        """Indices to visit for ``host``, in file order."""
        hit = set(self.always)
        hit.update(self.literal.get(host, ()))
        for i in self.wild:
            if blocks[i].host.match(host):
                hit.add(i)
        return sorted(hit)


_MATCH_ATTRS_WITH_ARG = ("host", "originalhost", "user", "localuser", "localnetwork", "exec")


def _compile_match(args: List[str]) -> Tuple[List[MatchCriterion], Optional[bool]]:
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
        if i >= len(args) or args[i] == "" or args[i].startswith("#"):
            raise BadValue(f"Missing Match criteria for {attr}")
        arg = args[i]
        i += 1
        if low not in _MATCH_ATTRS_WITH_ARG:
            raise BadValue(f"Unsupported Match attribute {attr}")
        crit = MatchCriterion(low, negate, arg)
        if low in ("host", "originalhost"):
            crit.patterns = PatternList(arg, lower=True)
        elif low in ("user", "localuser"):
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


def compile_lines(lines: List[Line], path: Optional[str]) -> CompiledFile:
    """Compile lexed lines; problems are collected, not raised."""
    blocks = [Block("start", 0)]
    problems: List[Problem] = []
    cur = blocks[0]
    for ln in lines:
        if ln.keyword is None:
            continue
        key = ln.keyword.lower()

        def bad(reason: str) -> None:
            problems.append(Problem(reason, path, ln.lineno))

        if not ln.args and ln.rest == "" and ln.error is None:
            bad(f'no argument after keyword "{key}"')
            continue
        if ln.error is not None:
            bad(ln.error)
            continue
        canon = KEYWORDS.get(key)
        if canon is None:
            problems.append(Problem(f"Bad configuration option: {key}", path, ln.lineno, key))
            cur.items.append((OP_UNKNOWN, key, ln.lineno))
            cur.scan = True
            continue
        opt = OPTIONS[canon]
        mode = opt.mode
        if mode == "host":
            pats = []
            err = False
            for a in ln.args:
                if a == "":
                    bad("keyword host empty argument")
                    err = True
                    break
                pats.append(a)
            cur = Block("host", ln.lineno, host=HostPatterns([] if err else pats))
            blocks.append(cur)
            continue
        if mode == "match":
            try:
                crits, allv = _compile_match(ln.args)
            except BadValue as exc:
                bad(str(exc))
                crits, allv = [], False
            cur = Block("match", ln.lineno, match=crits, match_all=allv)
            blocks.append(cur)
            continue
        if mode in ("ignore", "deprecated", "unsupported"):
            continue
        try:
            value = opt.parse(ln.args, ln.rest, canon)
        except BadValue as exc:
            msg = str(exc)
            if msg == "extra arguments at end of line":
                msg = f"keyword {key} extra arguments at end of line"
            bad(msg)
            continue
        if mode == "include":
            cur.items.append((OP_INCLUDE, value, ln.lineno))
            cur.scan = True
        elif mode == "accum":
            cur.items.append((OP_ACCUM, canon, value))
        elif mode == "forward":
            cur.items.append((OP_FORWARD, canon, value))
        elif mode == "sendenv":
            cur.items.append((OP_SENDENV, canon, value))
        elif mode == "proxyjump":
            cur.items.append((OP_JUMP, canon, value))
        elif mode == "forwardagent":
            if value[1] is not None:
                problem = _agent_path_problem(value[1])
                if problem:
                    bad(problem)
                    continue
                if "${" in value[1]:
                    cur.items.append((OP_ENVCHECK, value[1], ln.lineno))
                    cur.scan = True
            cur.items.append((OP_FWDAGENT, canon, value))
        elif mode == "rekeylimit":
            cur.items.append((OP_REKEY, canon, value))
        elif canon == "identityagent":
            problem = _agent_path_problem(value)
            if problem:
                bad(problem)
                continue
            if "${" in value:
                cur.items.append((OP_ENVCHECK, value, ln.lineno))
                cur.scan = True
            cur.items.append((OP_FIRST, canon, value))
        elif canon == "streamlocalbindmask":
            cur.items.append((OP_LAST_ALWAYS, canon, value))
            cur.scan = True
        elif canon == "setenv":
            cur.items.append((OP_SETENV, canon, value))
        elif canon == "logverbose":
            cur.items.append((OP_LOGVERBOSE, canon, value))
        elif canon == "ignoreunknown":
            cur.items.append((OP_FIRST, canon, value))
        elif value is UNSET:
            continue
        else:
            cur.items.append((OP_FIRST, canon, value))
    return CompiledFile(path, lines, blocks, problems)


def _agent_path_problem(arg: str) -> Optional[str]:
    err = _env_refs_ok(arg)
    if err:
        return f"Invalid environment expansion {arg}."
    if arg.startswith("$") and not arg.startswith("${"):
        name = arg[1:]
        if not (name and all(c.isalnum() or c == "_" for c in name) and name.isascii()):
            return f"Invalid environment name {arg}."
    return None
