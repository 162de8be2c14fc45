"""A strict wire (issue 17): UTF-8 is checked as the bytes arrive, so the first invalid byte
of a text message closes the connection with 1007 while the rest of the frame has not been
sent (Autobahn 6.4.3/6.4.4), at every position across reads and across fragments; valid text
split anywhere still arrives whole; and a payload length not in its minimal form is 1002."""

import os
import struct
import time

import pytest

from conftest import (OP_BINARY, OP_CONT, OP_TEXT, RawWS, assert_only_errors, encode_frame,
                      xor_mask)

TEXT = "aé€😀z".encode()  # 1 + 2 + 3 + 4 + 1 bytes: every kind of sequence
PAUSE = 0.01  # between the writes of one split: the server sees them as separate reads


def masked_frame(opcode, payload, fin=True):
    """A masked client frame, and where its payload starts."""
    key = os.urandom(4)
    head = encode_frame(opcode, b"", fin=fin, length=len(payload), mask_key=key)
    return head + xor_mask(payload, key), len(head)


def send_split(ws, data, at):
    ws.send_raw(data[:at])
    time.sleep(PAUSE)
    ws.send_raw(data[at:])


@pytest.mark.parametrize("k", range(len(TEXT) + 1))
def test_invalid_byte_fails_before_frame_is_complete(server, k):
    """An invalid byte at position k of an unfinished frame: 1007 arrives although the frame's
    remaining bytes never do."""
    payload = TEXT[:k] + b"\xff" + TEXT[k:] + b"x" * 200
    data, h = masked_frame(OP_TEXT, payload)
    before = server.stats()
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_raw(data[:h + k + 1])  # up to and including the invalid byte
        ws.expect_close(1007)
    finally:
        ws.close()
    assert_only_errors(before, server.stats(), errors_ws_1007=1)


@pytest.mark.parametrize("k", range(1, len(TEXT)))
def test_invalid_continuation_fails_in_next_fragment_before_it_completes(server, k):
    """The message is split into two fragments at k (inside a code point for most k); the second
    fragment has an invalid byte right at its start and never finishes."""
    first, _ = masked_frame(OP_TEXT, TEXT[:k], fin=False)
    bad = b"\xff" + b"y" * 300
    second, h = masked_frame(OP_CONT, bad)
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_raw(first)
        ws.send_raw(second[:h + 1])
        ws.expect_close(1007)
    finally:
        ws.close()


def test_broken_sequence_fails_at_the_byte_that_breaks_it(server):
    """A 4-byte sequence cut by ASCII: the ASCII byte is the proof, and it is enough."""
    payload = b"ok\xf0\x9f" + b"A" + b"." * 500
    data, h = masked_frame(OP_TEXT, payload)
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_raw(data[:h + 3])  # ok + F0: still possibly valid
        time.sleep(PAUSE)
        ws.send_raw(data[h + 3:h + 4])  # 9F: still possibly valid
        time.sleep(PAUSE)
        ws.send_raw(data[h + 4:h + 5])  # 'A': invalid
        ws.expect_close(1007)
    finally:
        ws.close()


@pytest.mark.parametrize("at", range(1, len(TEXT) + 1))
def test_valid_text_split_at_every_read_position(server, at):
    """The same frame delivered in two reads, split at every payload position (also inside the
    header when at is small): echoed whole."""
    data, h = masked_frame(OP_TEXT, TEXT)
    ws = RawWS.connect(server.port, "/echo")
    try:
        send_split(ws, data, h + at - 1)
        assert ws.recv_message() == (OP_TEXT, TEXT)
    finally:
        ws.close()


@pytest.mark.parametrize("j", range(0, len(TEXT) + 1))
def test_valid_text_split_at_every_fragment_and_read_position(server, j):
    """Fragments at every position j, each fragment sent in reads split at every position."""
    ws = RawWS.connect(server.port, "/echo")
    try:
        for at in range(0, len(TEXT) + 1):
            f1, h1 = masked_frame(OP_TEXT, TEXT[:j], fin=False)
            f2, h2 = masked_frame(OP_CONT, TEXT[j:])
            data = f1 + f2
            send_split(ws, data, min(len(data), h1 + at) if at <= j else len(f1) + h2 + (at - j))
            assert ws.recv_message() == (OP_TEXT, TEXT), (j, at)
    finally:
        ws.close()


def test_byte_by_byte_text(server):
    data, _ = masked_frame(OP_TEXT, TEXT * 3)
    ws = RawWS.connect(server.port, "/echo")
    try:
        for i in range(len(data)):
            ws.send_raw(data[i:i + 1])
            time.sleep(0.002)
        assert ws.recv_message() == (OP_TEXT, TEXT * 3)
    finally:
        ws.close()


# -- lengths in their minimal form (RFC 6455 §5.2): 1002 otherwise -------------------------------

def long_header(b0, length, form):
    mbit = 0x80
    if form == 16:
        return struct.pack("!BBH", b0, mbit | 126, length)
    return struct.pack("!BBQ", b0, mbit | 127, length)


@pytest.mark.parametrize("b0,length,form", [
    (0x81, 5, 16), (0x81, 125, 16), (0x82, 0, 16), (0x81, 5, 64), (0x82, 125, 64),
    (0x81, 126, 64), (0x82, 65535, 64), (0x01, 3, 16),
])
def test_non_minimal_length_1002(server, bystanders, b0, length, form):
    before = server.stats()
    ws = RawWS.connect(server.port, "/echo")
    try:
        # header only: the length bytes prove it, the mask and payload are not needed
        ws.send_raw(long_header(b0, length, form))
        ws.expect_close(1002)
    finally:
        ws.close()
    assert_only_errors(before, server.stats(), errors_ws_1002=1)
    bystanders.check()


def test_non_minimal_continuation_1002(server):
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_frame(OP_TEXT, b"abc", fin=False)
        ws.send_raw(long_header(0x80, 3, 16))
        ws.expect_close(1002)
    finally:
        ws.close()


@pytest.mark.parametrize("length", [126, 65535, 65536])
def test_minimal_long_forms_accepted(server, length):
    ws = RawWS.connect(server.port, "/echo")
    try:
        data = bytes(range(256)) * (length // 256 + 1)
        ws.send_frame(OP_BINARY, data[:length])
        assert ws.recv_message() == (OP_BINARY, data[:length])
    finally:
        ws.close()


def test_rsv1_without_deflate_1002(server):
    """A client that did not negotiate permessage-deflate may not set RSV1."""
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_frame(OP_TEXT, b"x", rsv=4)
        ws.expect_close(1002)
    finally:
        ws.close()
