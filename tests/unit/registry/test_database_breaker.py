"""The registry's PostgreSQL behind a proxy that is cut: calls raise Unavailable naming
the database, the breaker opens and stops trying, and one try after the reset time
brings everything back."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from tests.chaos.proxy import TcpProxy

from modelport.errors import Unavailable
from modelport.registry import Registry


@pytest.mark.postgres
def test_an_unreachable_database_fails_fast_then_recovers(postgres_url: str) -> None:
    direct = make_url(postgres_url)
    with TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
        url = direct.set(port=proxy.port).render_as_string(hide_password=False)
        registry = Registry(url)
        assert registry.list_deployments("production") == []
        breaker = registry.breaker
        assert breaker is not None and breaker.state == "closed"

        proxy.cut()
        for _ in range(3):
            with pytest.raises(Unavailable) as caught:
                registry.list_deployments("production")
            assert f"the registry database at 127.0.0.1:{proxy.port}/" in caught.value.message
            assert "loaded models keep serving" in caught.value.message
            assert caught.value.hint == f"check it with: pg_isready -h 127.0.0.1 -p {proxy.port}"
        assert breaker.state == "open"
        tried = proxy.connections
        with pytest.raises(Unavailable, match="circuit open after 3 failures"):
            registry.list_deployments("production")
        assert proxy.connections == tried  # open: not even a connection attempt

        proxy.restore()
        time.sleep(breaker.reset_timeout_s)
        assert registry.list_deployments("production") == []
        assert breaker.state == "closed"
        registry.close()


@pytest.mark.postgres
def test_a_statement_the_database_refuses_is_not_an_outage(postgres_url: str) -> None:
    registry = Registry(postgres_url)
    assert registry.breaker is not None
    for _ in range(4):  # a cancelled statement (SQLSTATE 57014): the database answered
        with (
            pytest.raises(sa.exc.OperationalError, match="statement timeout"),
            registry.engine.connect() as conn,
        ):
            conn.execute(sa.text("SET statement_timeout = 1"))
            conn.execute(sa.text("SELECT pg_sleep(1)"))
    assert registry.breaker.state == "closed"
    assert registry.list_deployments("production") == []
    registry.close()
