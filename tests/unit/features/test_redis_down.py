"""When Redis cannot be reached the store fails fast with Unavailable, never hangs,
and works again by itself once Redis is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelport.errors import Unavailable
from modelport.features.aggregates import ops
from modelport.features.online import Event, Lookup
from modelport.features.redis import RedisStore
from modelport.features.views import Aggregation, FeatureView, StreamSource
from tests.features_proxy import Mode, TcpProxy

TIMEOUT_S = 0.25
T0 = 1_700_000_000.0


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy(("127.0.0.1", 6379))
    p.set("up")
    yield p
    p.close()


@pytest.fixture
def view() -> Iterator[FeatureView]:
    made = FeatureView(
        name=f"t_{uuid.uuid4().hex[:12]}",
        entity="user_id",
        aggregations=(Aggregation("amount_sum_1m", "sum", "amount", 60.0),),
        source=StreamSource(stream="tx"),
    )
    yield made
    direct = RedisStore("redis://127.0.0.1:6379/0", timeout_s=2.0)
    direct.delete_view(made.name)
    direct.close()


def event(view: FeatureView, event_id: str, amount: float) -> Event:
    return Event(event_id, "u1", ops(view, {"amount": amount}, T0))


def calls(store: RedisStore, view: FeatureView) -> dict[str, Callable[[], Any]]:
    return {
        "read": lambda: store.read([Lookup(view.name, "rows", ["u1"])]),
        "apply": lambda: store.apply(view.name, [event(view, "e2", 2.0)]),
        "write": lambda: store.write(view.name, {"u1": ({"x": 2.0}, T0 + 1)}),
        "delete_view": lambda: store.delete_view(view.name + "_other"),
        "ping": store.ping,
    }


@pytest.mark.parametrize("mode", ["down", "silent"])
def test_unreachable_fails_fast_then_recovers(
    proxy: TcpProxy, view: FeatureView, mode: Mode
) -> None:
    store = RedisStore(proxy.url, timeout_s=TIMEOUT_S)
    store.write(view.name, {"u1": ({"x": 1.0}, T0)})
    assert store.apply(view.name, [event(view, "e1", 1.0)]) == 1

    proxy.set(mode)  # refuses connections, or takes them and never answers
    for name, call in calls(store, view).items():
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            call()
        took = time.monotonic() - started
        assert took < 2.0, f"{name} took {took:.2f}s with Redis {mode}"
        assert f"127.0.0.1:{proxy.port}" in str(caught.value)
        assert "predictions that need features fail until it is back" in str(caught.value)
        assert caught.value.hint == f"check it with: redis-cli -u {proxy.url} ping"

    proxy.set("up")  # the same store object works again, with nothing lost or doubled
    [[row], [state]] = store.read(
        [Lookup(view.name, "rows", ["u1"]), Lookup(view.name, "state", ["u1"])]
    )
    assert row is not None and row.values == {"x": 1.0}
    assert state is not None and sum(v for k, v in state.items() if k.endswith(":s")) == 1.0
    assert store.apply(view.name, [event(view, "e1", 1.0), event(view, "e2", 2.0)]) == 1
    assert store.write(view.name, {"u1": ({"x": 2.0}, T0 + 1)}) == 1
    store.ping()
    store.close()


def test_message_names_the_store_without_its_password(proxy: TcpProxy) -> None:
    proxy.set("down")
    url = f"redis://:s3cret@127.0.0.1:{proxy.port}/0"
    store = RedisStore(url, timeout_s=TIMEOUT_S)
    with pytest.raises(Unavailable) as caught:
        store.ping()
    text = str(caught.value)
    assert f"redis://:***@127.0.0.1:{proxy.port}/0" in text
    assert "s3cret" not in text
    store.close()
