"""The worker's HTTP layer with fakes: problem+json for bad input of any shape."""

from __future__ import annotations

import json

import pytest

from oidc_idle.errors import Unauthorized
from oidc_idle.worker.http import create_app


class StubAuth:
    def client_id(self, authorization):
        if authorization != "Bearer ok":
            raise Unauthorized("missing bearer token")
        return "app-a"


@pytest.fixture
def api(rig):
    rig.login("sid-1", "user-1", "app-a")
    return create_app(rig.worker, StubAuth()).test_client()


def post(api, body, ct="application/json"):
    return api.post("/v1/activity", data=body, headers={"Authorization": "Bearer ok",
                                                       "Content-Type": ct})


@pytest.mark.parametrize("body, error", [
    ("[" * 100_000 + "]" * 100_000, "malformed_json"),
    ('{"events":' + '{"a":' * 5000 + "1" + "}" * 5001, "malformed_json"),
    ('{"events":[{"sid":"\\ud800","sub":"x","kind":"click"}]}', "invalid_request"),
    ('{"events":[{"sid":"s","sub":"\\udfff","kind":"click"}]}', "invalid_request"),
    ('{"events":[{"sid":"s","sub":"u","kind":"click","at":"2026-01-01T00:00:00Z",'
     '"auth_time":"never"}]}', "invalid_request"),
])
def test_any_shape_of_bad_body_is_a_400_problem(api, body, error):
    r = post(api, body)
    assert r.status_code == 400, r.data[:200]
    assert r.mimetype == "application/problem+json"
    assert r.json["type"].endswith(error) and "Traceback" not in r.get_data(as_text=True)


def test_unknown_routes_and_methods_are_problems_too(api):
    assert api.get("/v1/nothing").status_code == 404
    r = api.put("/v1/activity")
    assert r.status_code == 405 and r.mimetype == "application/problem+json"


def test_late_report_for_a_dead_session_is_not_counted(api, rig):
    assert json.loads(post(api, json.dumps({"events": [
        {"sid": "sid-1", "sub": "user-1", "kind": "click"}]})).data)["results"][0]["counted"]
    rig.clock.advance(10 * 60_000)
    result = post(api, json.dumps({"events": [
        {"sid": "sid-1", "sub": "user-1", "kind": "click"}]})).json["results"][0]
    assert result["alive"] is False and result["counted"] is False


def test_one_batch_cannot_flood_keycloak_with_lookups(api, rig):
    events = [{"sid": f"nope-{i}", "sub": "user-1", "kind": "click"} for i in range(200)]
    results = post(api, json.dumps({"events": events})).json["results"]
    assert rig.kc.lookups == 50
    assert sum(r["error"] == "verification_deferred" for r in results) == 150


def test_the_openapi_document_describes_every_route(api, rig):
    doc = api.get("/openapi.json").json
    app = create_app(rig.worker, StubAuth())
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<sid>", "{sid}")
        assert path in doc["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (path, method)
