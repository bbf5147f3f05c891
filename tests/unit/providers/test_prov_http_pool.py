"""The runtime's shared provider HTTP clients (F-105): one per endpoint, bounded, closed."""

from __future__ import annotations

import pytest

from rspp.providers import HttpClientPool, HttpPoolLimits, create_provider

pytestmark = pytest.mark.unit

ENV = {"OPENAI_API_KEY": "k"}


async def test_adapters_of_one_endpoint_share_a_client_and_do_not_close_it() -> None:
    pool = HttpClientPool()
    one = create_provider("llm", {"type": "openai"}, env=ENV, http_pool=pool)
    two = create_provider("tts", {"type": "openai-tts"}, env=ENV, http_pool=pool)
    other = create_provider("llm", {"type": "openai", "base_url": "http://127.0.0.1:9/v1",
                                    "api_key": "env://OPENAI_API_KEY"}, env=ENV, http_pool=pool)
    shared = one._client  # type: ignore[attr-defined]
    assert shared is two._client  # type: ignore[attr-defined]
    assert other._client is not shared  # type: ignore[attr-defined]
    assert pool.endpoints == ("https://api.openai.com:443", "http://127.0.0.1:9")
    await one.aclose()  # a session ending leaves the shared client open
    assert not shared.is_closed
    await pool.aclose()  # the runtime stopping closes it
    assert shared.is_closed
    assert pool.client_for("https://api.openai.com/v1") is None


async def test_endpoints_beyond_the_bound_get_their_own_client() -> None:
    pool = HttpClientPool(HttpPoolLimits(max_endpoints=1))
    assert pool.client_for("http://a.example/v1") is not None
    assert pool.client_for("http://b.example/v1") is None
    own = create_provider("llm", {"type": "openai", "base_url": "http://b.example/v1",
                                  "api_key": "env://OPENAI_API_KEY"}, env=ENV, http_pool=pool)
    assert pool.endpoints == ("http://a.example:80",)
    await own.aclose()  # its own client: closed with it
    assert own._client.is_closed  # type: ignore[attr-defined]
    await pool.aclose()
