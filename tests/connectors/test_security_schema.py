"""Schemathesis against the OpenAPI schema: no generated input gets a 500.

Every operation of ``/openapi.json`` gets ``BOTKIT_TEST_SECURITY_EXAMPLES`` generated requests
(default 15; CI-sized), sent over real HTTP to the live server with valid credentials
(the public key, a real conversation's token, an API key), so generation goes past
authentication. ``POST /api/v1/admin/ingest`` is left out (it would rebuild the shared
index under the other tests). Any 5xx is a failure; the run reports the counts.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLES = int(os.environ.get("BOTKIT_TEST_SECURITY_EXAMPLES", "15"))
SKIP = {("POST", "/api/v1/admin/ingest")}


def _fuzz(base_url: str, headers_for: Any, conversation_id: str) -> tuple[Counter[str], list[str]]:
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIP:
            _run(operation, base_url, headers_for, conversation_id, statuses, failures)
    return statuses, failures


def _run(operation: Any, base_url: str, headers_for: Any, conversation_id: str, statuses: Counter[str],
         failures: list[str]) -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        path_parameters = dict(case.path_parameters or {})
        if "conversation_id" in path_parameters and len(statuses) % 2 == 0:
            path_parameters["conversation_id"] = conversation_id  # half the time, a real conversation
            case.path_parameters = path_parameters
        response = case.call(base_url=base_url, headers={**(case.headers or {}), **headers_for(operation.path)},
                             timeout=60)
        statuses[f"{operation.method.upper()} {operation.path} {response.status_code}"] += 1
        if response.status_code >= 500:
            failures.append(f"{operation.method.upper()} {operation.path}: {response.status_code} "
                            f"{response.text[:200]} for {case.path_parameters} {str(case.body)[:200]}")

    check()


async def test_no_500_for_generated_requests(live_server: str, api_key: str, kit: Any) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as http:
        conversation_id, conversation_headers = await kit.new_conversation(http)

    def headers_for(path: str) -> dict[str, str]:
        headers = {"X-Bot-Key": kit.PUBLIC_KEY}
        if path.startswith("/api/v1/conversations/"):
            headers.update(conversation_headers)
        elif path.startswith(("/api/v1/admin", "/v1/")):
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    statuses, failures = await asyncio.to_thread(_fuzz, live_server, headers_for, conversation_id)
    total = sum(statuses.values())
    by_class = Counter(key.rsplit(" ", 1)[1][0] + "xx" for key in statuses.elements())
    operations = {key.rsplit(" ", 1)[0] for key in statuses}
    print(f"\nschemathesis: {total} generated requests over {len(operations)} operations, "
          f"{dict(sorted(by_class.items()))}, 5xx: {len(failures)}")
    assert len(operations) >= 8 and total >= 8 * min(EXAMPLES, 5)
    assert not failures, failures[:10]
