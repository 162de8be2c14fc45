"""The seed's own LRU worker and client, extracted and repaired at test time (never copied).

``../shared/seeds/zeromq-lru-broker.txt`` (a translated blog post) carries the ZeroMQ guide's
Python LRU queue (``worker_thread``, ``client_thread``, and a broker ``main``) run together on
one line, with the translation's damage: capitalised words (``Socket.connect``, ``ZMQ. REQ``,
``Try``), spaces inside dotted names and after string prefixes (``socket . recv``, ``b "OK"``),
padded strings (``' ASCII '``), one docstring opener lost, and no line breaks or indentation.

``extract_seed_lru()`` repairs it mechanically, with rules that know Python, not the seed's
code (nothing of the seed is kept in this repository):

1. cut the two functions out of the text by their ``def`` names (case-insensitive);
2. drop docstrings (``"" "`` pairs; a lost opener means "from the header to the next closer");
3. tokenise; drop ``#`` comments up to the first token run that can only start a statement
   (a dotted name followed by ``=`` or ``(``, or a statement keyword);
4. case: every name lower-case, except ``True/False/None`` and attributes of ``zmq`` (looked up
   case-insensitively in ``dir(zmq)``); byte-string words upper-case (the guide's protocol
   words: ``READY``, ``OK``, ``HELLO``); padding inside string literals stripped, and spaces inside encoding names
   (``' A Scii '``) removed;
5. split statements where an expression has ended at bracket depth 0 and a name follows, and
   indent by block: ``def``/``try``/``while`` open one, ``except`` returns to its ``try``;
   5b. ``print``'s keyword arguments (``end=``) close any bracket still open inside print's
   call (the translation ate a ``)`` there), and a lone ``'`` before ``)`` is an empty string
   whose twin quote was eaten.

The result must ``compile``; the functions are then run unchanged by a small driver (ours)
that only supplies the addresses (tcp:// instead of the seed's inproc://), as the issue asks.
If the seed text changes so that a rule no longer applies, an AssertionError says which.
"""

import re

import zmq

from seedsdir import seeds_dir

SEED = "zeromq-lru-broker.txt"

_TOKEN = re.compile(r"""
    (?P<lost>'(?=\)))
  | (?P<str>(?:[bBuU]\s?)?(?:"[^"]*"|'[^']*'))
  | (?P<comment>\#)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<num>\d+)
  | (?P<op>==|!=|\+=|-=|[=().,:%\[\]+\-*])
  | (?P<ws>\s+)
""", re.X)

STMT_KEYWORDS = {"try", "while", "return", "except", "def", "if", "for", "break", "pass"}
EXPR_KEYWORDS = {"while", "return", "except", "not", "in", "and", "or", "is", "if", "def",
                 "for", "print"}
BLOCK_KEYWORDS = {"def", "try", "while", "except", "if", "for", "else"}
PRINT_KWARGS = {"end", "sep", "file", "flush"}
CONSTANTS = {"true": "True", "false": "False", "none": "None"}


def _cut(text, start_name, end_name):
    low = text.lower()
    a = low.find(f"def {start_name} (")
    b = low.find(f"def {end_name} (", a + 1)
    assert a >= 0 and b > a, f"{SEED}: no 'def {start_name}' before 'def {end_name}' in the text"
    return text[a:b]


def _drop_docstring(fn):
    head_end = fn.find("):") + 2
    assert head_end > 1, f"{SEED}: a def header without '):'"
    rest = fn[head_end:].lstrip()
    if rest.startswith('"" "'):
        rest = rest[4:]
    close = rest.find('"" "')
    assert close >= 0, f"{SEED}: no docstring closer after {fn[:40]!r}"
    return fn[:head_end] + " " + rest[close + 4:]


def _tokens(code):
    out, pos = [], 0
    while pos < len(code):
        m = _TOKEN.match(code, pos)
        assert m, f"{SEED}: cannot tokenise at {code[pos:pos + 30]!r}"
        pos = m.end()
        kind = m.lastgroup
        if kind == "lost":      # the translation ate one quote of an empty string: end='')
            kind, pos = "str", pos
            out.append((kind, "''"))
            continue
        if kind != "ws":
            out.append((kind, m.group()))
    return out


def _starts_statement(toks, i):
    kind, val = toks[i]
    if kind != "name":
        return False
    if val.lower() in STMT_KEYWORDS:
        return True
    j = i + 1
    while j + 1 < len(toks) and toks[j] == ("op", ".") and toks[j + 1][0] == "name":
        j += 2
    return j < len(toks) and toks[j] in (("op", "="), ("op", "("))


def _drop_comments(toks):
    out, i = [], 0
    while i < len(toks):
        if toks[i][0] == "comment":
            i += 1
            while i < len(toks) and not _starts_statement(toks, i):
                i += 1
            continue
        out.append(toks[i])
        i += 1
    return out


def _fix_case(toks):
    out = []
    for i, (kind, val) in enumerate(toks):
        if kind == "name":
            low = val.lower()
            after_zmq = i >= 2 and toks[i - 1] == ("op", ".") and toks[i - 2][1].lower() == "zmq"
            if after_zmq:
                hits = [n for n in dir(zmq) if n.lower() == low]
                assert hits, f"{SEED}: zmq has no attribute like {val!r}"
                val = next((h for h in hits if h.isupper()), hits[0])
            else:
                val = CONSTANTS.get(low, low)
        elif kind == "str":
            q = val[-1]
            start = val.index(q)
            prefix = val[:start].replace(" ", "").lower()
            body = val[start + 1:-1]
            codec_arg = i >= 2 and toks[i - 1][1] == "(" and toks[i - 2][1].lower() in (
                "encode", "decode")
            if codec_arg:                   # an encoding name: the translation split words
                body = "".join(body.split())
            elif prefix == "b" and body.isalpha():
                body = body.upper()
            elif body.strip() != body:
                body = body.strip()
            val = f"{prefix}{q}{body}{q}"
        out.append((kind, val))
    return out


def _lines_from(toks, level, try_levels):
    lines, cur, depth, header = [], [], 0, False
    for i, (kind, val) in enumerate(toks):
        if (cur and cur[0][1] == "print" and depth > 1 and val in PRINT_KWARGS and
                i + 1 < len(toks) and toks[i + 1] == ("op", "=") and cur[-1][1] == ","):
            # print's keyword arguments belong to print's own parentheses: the translation
            # lost a closing one before ", end=" (rule 5b)
            cur[-1:-1] = [("op", ")")] * (depth - 1)
            depth = 1
        if not cur:
            if kind == "name" and val == "except":
                assert try_levels, f"{SEED}: 'except' without 'try'"
                level = try_levels.pop()
            header = kind == "name" and val in BLOCK_KEYWORDS
            if val == "try":
                try_levels.append(level)
        elif depth == 0 and kind == "name" and not header:
            prev_kind, prev = cur[-1]
            ended = prev == ")" or prev_kind in ("str", "num") or (
                prev_kind == "name" and prev not in EXPR_KEYWORDS)
            if ended and val not in ("in", "and", "or", "is", "not", "if", "else"):
                lines.append((level, cur))
                cur = []
                if val == "except":
                    assert try_levels, f"{SEED}: 'except' without 'try'"
                    level = try_levels.pop()
                header = val in BLOCK_KEYWORDS
                if val == "try":
                    try_levels.append(level)
        cur.append((kind, val))
        if val in ("(", "["):
            depth += 1
        elif val in (")", "]"):
            depth -= 1
        elif val == ":" and depth == 0 and header:
            lines.append((level, cur))
            cur, level, header = [], level + 1, False
    if cur:
        lines.append((level, cur))
    return lines


def _render(lines):
    out = []
    for level, toks in lines:
        s = ""
        for kind, val in toks:
            if s and not (val in ".,():[]" or s.endswith(("(", ".", "["))):
                s += " "
            s += val
        s = re.sub(r"(\w) \(", r"\1(", s)
        s = re.sub(r"(\(|, )(\w+) = ", r"\1\2=", s)      # keyword arguments
        out.append("    " * level + s)
    return "\n".join(out) + "\n"


def repair(fn_text):
    toks = _fix_case(_drop_comments(_tokens(_drop_docstring(fn_text))))
    return _render(_lines_from(toks, 0, []))


def extract_seed_lru():
    """(code, names): the seed's worker and client functions, repaired; `names` are their
    function names as defined in `code`."""
    import os
    with open(os.path.join(seeds_dir(SEED), SEED), encoding="utf-8") as f:
        text = " ".join(f.read().split("\n"))
    worker = repair(_cut(text, "worker_thread", "client_thread"))
    client = repair(_cut(text, "client_thread", "main"))
    code = "import zmq\n\n" + worker + "\n\n" + client
    for must in ("def worker_thread(", "def client_thread(", "zmq.REQ", 'b"READY"',
                 "recv()", "zmq.SNDMORE", "zmq.ContextTerminated", 'b"HELLO"'):
        assert must in code, f"{SEED}: the repaired code lacks {must!r}; the seed text changed?\n{code}"
    compile(code, SEED, "exec")
    return code
