"""The seed documents' own clients, extracted at test time (never copied into this repository).

roomcast grew from two seeds in ``../shared/seeds/`` (relative to the repository root):

* ``python-websockets-game-server.txt``: an article whose ``ws_client.py`` joins a room and
  ping-pongs ``{'type':'ping','seq':N}`` messages forever, checking its own order;
* ``reactor-chat-server.zh.txt``: a selectors chat server and its client, which sends bare
  ``{"user":..,"text":..}`` objects and prints whatever arrives.

The tests run those clients exactly as published except for the address: ``extract_*`` find the
code block in the text (the texts carry prose, and the chat one line-number gutters), check that
it looks as expected (failing loudly when the seed text changed), change only the address and
write the result to a file. ``seeds_dir()`` skips the test, saying why, when the seeds are absent.
"""

import os
import re
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# The seeds' clients run with Debian's interpreter (python3-websockets), never a venv's.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else "python3"

WS_SEED = "python-websockets-game-server.txt"
CHAT_SEED = "reactor-chat-server.zh.txt"


def _candidates():
    env = os.environ.get("ROOMCAST_SEEDS_DIR")
    if env:
        yield env
    # A clone has shared/ beside it: ../shared/seeds from the repository root.
    yield os.path.join(REPO, "..", "shared", "seeds")
    # A git worktree may live elsewhere than the clone it belongs to: try beside the main one.
    try:
        common = subprocess.run(["git", "-C", REPO, "rev-parse", "--path-format=absolute",
                                 "--git-common-dir"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        common = ""
    if common:
        yield os.path.join(os.path.dirname(os.path.dirname(common)), "shared", "seeds")


def seeds_dir(*needed):
    """The seeds directory holding every file in `needed`; skips the test if there is none."""
    tried = []
    for d in _candidates():
        d = os.path.normpath(d)
        tried.append(d)
        if all(os.path.isfile(os.path.join(d, n)) for n in needed):
            return d
    pytest.skip(f"seed documents {needed} not found (looked in {tried}; set ROOMCAST_SEEDS_DIR "
                f"to the shared/seeds directory)")


def _read(name):
    with open(os.path.join(seeds_dir(name), name), encoding="utf-8") as f:
        return f.read().splitlines()


def _find(norm, start, pred):
    return next((i for i in range(start, len(norm)) if pred(norm[i])), None)


def _block(lines, heading, first, last, what):
    """The code block after the line equal to `heading`: from the first line that starts with
    `first` up to and including the first line after it that contains `last`. (Markers are
    fragments, not lines of the seed: nothing of the seed's code is kept in this repository.)"""
    norm = [ln.rstrip() for ln in lines]
    h = _find(norm, 0, lambda ln: ln == heading)
    if h is None:
        raise AssertionError(f"{what}: the seed text no longer has a line {heading!r}")
    a = _find(norm, h + 1, lambda ln: ln.startswith(first))
    b = None if a is None else _find(norm, a + 1, lambda ln: last in ln)
    if a is None or b is None:
        raise AssertionError(f"{what}: no code block from {first!r} to {last!r} after "
                             f"{heading!r} in the seed text")
    block = [ln.rstrip("\r") for ln in lines[a:b + 1]]   # verbatim, trailing spaces kept
    # The chat text numbers its code lines in a gutter *before* each block: a bare number
    # inside the block means the extraction went wrong (or the text's layout changed).
    gutter = [ln for ln in block if ln.strip().isdigit()]
    assert not gutter, f"{what}: line-number gutter lines inside the code block: {gutter[:5]}"
    return "\n".join(block) + "\n"


def _replace_once(code, pattern, new, what):
    """Replaces the one match of the regular expression pattern."""
    out, n = re.subn(pattern, new, code)
    assert n == 1, f"{what}: expected exactly one match of {pattern!r} in the seed code, found {n}"
    return out


def _check(code, what, must_have):
    for s in must_have:
        assert s in code, f"{what}: the extracted code lacks {s!r}; the seed text changed?"
    compile(code, what, "exec")   # a syntax error here means a bad extraction


def extract_ws_client(ws_url):
    """The seed article's ws_client.py, connecting to ws_url instead of ws://localhost:8765."""
    what = f"{WS_SEED} ws_client.py"
    code = _block(_read(WS_SEED), "ws_client.py", "from typing import", "run_until_complete(",
                  what)
    _check(code, what, ("async def reader", "async def hello", "'join'", "bad msg sequence",
                        "bad message seq", "trigger_count", "/s {room}"))
    return _replace_once(code, r'"ws://localhost:8765"', f'"{ws_url}"', what)


def extract_chat_client(port):
    """The seed's selectors chat client, with its -port default 1234 changed to `port`.

    (Passing -port would not do: argparse keeps it as a string, and socket.connect wants an
    int, so only the default works unchanged.)"""
    what = f"{CHAT_SEED} chat client"
    code = _block(_read(CHAT_SEED), "Python Chat Client", "import argparse", "chat.run()", what)
    _check(code, what, ("class ChatClient", "readline()", "'user'", "'text'", "-username"))
    return _replace_once(code, r"(add_argument\('-port',[^)]*default=)1234\b",
                         rf"\g<1>{int(port)}", what)


def write_script(tmp_path, name, code):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(code)
    return path
