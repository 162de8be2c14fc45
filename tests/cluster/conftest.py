"""Fixtures for the cluster tests (roomcast over Redis, docs/cluster.md).

* ``redis_server``: a private, started ``RedisServer`` (redis_server.py) for one test, destroyed
  afterwards (process stopped, data directory removed).
* ``redis_factory``: call it (``redis_factory(password="x")``) for more servers in one test; all
  are destroyed afterwards.

Tests skip when redis-server is not installed (``scripts/deps.sh test`` installs it).
"""

import shutil

import pytest

from redis_server import REDIS_BIN, RedisServer


def _need_redis():
    if shutil.which(REDIS_BIN) is None:
        pytest.skip("%s is not installed (scripts/deps.sh test)" % REDIS_BIN)


@pytest.fixture
def redis_factory():
    _need_redis()
    made = []

    def make(**kw):
        s = RedisServer(**kw)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.destroy()


@pytest.fixture
def redis_server(redis_factory):
    return redis_factory()
