"""Property test over the ASGI app: for generated requests to every route of the route
table (any key, any path/query values, any body: typed-looking, hostile or raw bytes)
the answer is never a 5xx, always a JSON error naming a field when it is a 4xx, and a
rejected request changes no state (the audited RBAC denial is the one record a refusal
leaves, by design: F-115)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from rspp.controlplane import ControlPlane, ControlPlaneSettings, create_app
from rspp.controlplane._routes import ROUTES, Op
from rspp.controlplane._schema import audit, audit_intake, metadata

from .conftest import spec_version

pytestmark = pytest.mark.integration

ADMIN = "prop-admin"
KEYS: dict[str, str | None] = {"none": None, "garbage": "not-a-key", "admin": ADMIN}

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["acme", "rt-a", "1.0.0", "voice-assistant", "x" * 10_000, "a\x00b"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
segment = st.one_of(
    st.sampled_from(["acme", "s-1", "rt-a", "voice-assistant", "1.0.0", "*", "x" * 300]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
)


def _body(op: Op) -> st.SearchStrategy[bytes | None]:
    if op.body is None:
        return st.none() | st.binary(max_size=40)
    names = [f.name for f in msgspec.structs.fields(op.body)]
    shaped = st.fixed_dictionaries(
        {}, optional={name: json_value for name in names}
    ).map(lambda d: json.dumps(d).encode())
    return st.one_of(
        shaped,
        json_value.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=60),
        st.just(b"[" * 50_000 + b"]" * 50_000),
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[Op, str, dict[str, str], bytes | None, str | None]:
    op = draw(st.sampled_from(ROUTES))
    path = op.path
    for name in op.path_params:
        path = path.replace("{" + name + "}", quote(draw(segment), safe=""))
    query = draw(st.dictionaries(st.sampled_from(
        ["tenant_id", "session_id", "pipeline_name", "name", "after", "limit", "x"]),
        st.text(max_size=12) | st.sampled_from(["acme", "-1", "99999999999999999999"]),
        max_size=3))
    body = draw(_body(op))
    key = KEYS[draw(st.sampled_from(sorted(KEYS)))]
    return op, path, query, body, key


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[ControlPlane, httpx.AsyncClient]]:
    cp = await ControlPlane.open(
        ControlPlaneSettings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", admin_key=ADMIN)
    )
    transport = httpx.ASGITransport(app=create_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as http:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        await http.post("/v1/pipelines", json={"spec": spec_version("1.0.0")}, headers=headers)
        await http.post("/v1/runtimes", json={"runtime_id": "rt-a", "endpoint": "ws://a"},
                        headers=headers)
        yield cp, http
    await cp.close()


async def _state(cp: ControlPlane) -> dict[str, int]:
    # the background sealer moves entries from the intake into the chain: let it finish first,
    # or one entry can be counted in neither table (the tables are counted one after another)
    await cp.audit.close()
    counts = []
    for table in metadata.sorted_tables:
        count = select(func.count()).select_from(table)
        if table is audit or table is audit_intake:
            count = count.where(table.c.action != "rbac.denied")
        counts.append(count.scalar_subquery().label(table.name))
    # every table's row count in one statement (two per example: one round trip each)
    async with cp.store.engine.connect() as conn:
        row = (await conn.execute(select(*counts))).one()
    state = {name: int(n) for name, n in row._mapping.items()}
    # one audit entry, sealed or still in the intake
    state["cp_audit"] += state.pop("cp_audit_intake")
    return state


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests())
async def test_generated_requests_never_5xx_and_rejections_change_nothing(
    api: tuple[ControlPlane, httpx.AsyncClient],
    request: tuple[Op, str, dict[str, str], bytes | None, str | None],
) -> None:
    cp, http = api
    op, path, query, body, key = request
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        headers["content-type"] = "application/json"
    before = await _state(cp)
    response = await http.request(op.method, path, params=query, content=body, headers=headers)
    assert response.status_code < 500, (op.method, path, response.text[:300])
    if response.status_code >= 400:
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] and error["message"], error
        assert await _state(cp) == before, (op.method, path, response.status_code, error)
