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


def _block(lines, heading, first, last, what):
    """The lines from the first line equal to `first` after the line equal to `heading`, up to
    and including the first line equal to `last` (equality after stripping trailing space)."""
    norm = [ln.rstrip() for ln in lines]
    try:
        h = norm.index(heading)
    except ValueError:
        raise AssertionError(f"{what}: the seed text no longer has a line {heading!r}")
    try:
        a = norm.index(first, h + 1)
        b = norm.index(last, a + 1)
    except ValueError:
        raise AssertionError(f"{what}: no code block from {first!r} to {last!r} after "
                             f"{heading!r} in the seed text")
    block = [ln.rstrip("\r") for ln in lines[a:b + 1]]   # verbatim, trailing spaces kept
    # The chat text numbers its code lines in a gutter *before* each block: a bare number
    # inside the block means the extraction went wrong (or the text's layout changed).
    gutter = [ln for ln in block if ln.strip().isdigit()]
    assert not gutter, f"{what}: line-number gutter lines inside the code block: {gutter[:5]}"
    return "\n".join(block) + "\n"


def _replace_once(code, old, new, what):
    n = code.count(old)
    assert n == 1, f"{what}: expected exactly one {old!r} in the seed code, found {n}"
    return code.replace(old, new)


def _check(code, what, must_have):
    for s in must_have:
        assert s in code, f"{what}: the extracted code lacks {s!r}; the seed text changed?"
    compile(code, what, "exec")   # a syntax error here means a bad extraction


def extract_ws_client(ws_url):
    """The seed article's ws_client.py, connecting to ws_url instead of ws://localhost:8765."""
    what = f"{WS_SEED} ws_client.py"
    code = _block(_read(WS_SEED), "ws_client.py", "from typing import *",
                  "asyncio.get_event_loop().run_until_complete(hello())", what)
    _check(code, what, ("async def reader(websocket):", "async def hello():",
                        "'type': 'join', 'room': room", "raise Exception(\"bad msg sequence\")",
                        "raise Exception(\"bad message seq\")", "trigger_count = 5000.0",
                        "print( f'{count /(next_time - last_time)}/s {room}' )"))
    return _replace_once(code, 'uri = "ws://localhost:8765"', f'uri = "{ws_url}"', what)


def extract_chat_client(port):
    """The seed's selectors chat client, with its -port default 1234 changed to `port`.

    (Passing -port would not do: argparse keeps it as a string, and socket.connect wants an
    int, so only the default works unchanged.)"""
    what = f"{CHAT_SEED} chat client"
    code = _block(_read(CHAT_SEED), "Python Chat Client", "import argparse", "chat.run()", what)
    _check(code, what, ("class ChatClient:", "sys.stdin.readline()",
                        "json.dumps({'user': self._name, 'text': data}",
                        "print(data.decode(\"utf-8\"))", "parser.add_argument('-username'"))
    return _replace_once(code, "parser.add_argument('-port', nargs='?', default=1234)",
                         f"parser.add_argument('-port', nargs='?', default={int(port)})", what)


def write_script(tmp_path, name, code):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(code)
    return path
