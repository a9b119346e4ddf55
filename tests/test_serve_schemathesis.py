"""Property-based fuzzing of every operation in the service's own OpenAPI schema: no input gives a 500.

Bounded: a tiny model, a real uvicorn on 127.0.0.1, a few examples per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from test_serve_support import live_server, tiny_settings

from tdro_suite.serve import ServeSettings, create_app

MAX_EXAMPLES = 6


# The schema comes from the app itself (building an app loads nothing); requests go to a live server.
schema = schemathesis.openapi.from_dict(create_app(ServeSettings()).openapi())


@pytest.fixture(scope="module")
def base_url(tiny_encoder_dir, tmp_path_factory):
    index = tmp_path_factory.mktemp("fuzz") / "index"
    app = create_app(tiny_settings(tiny_encoder_dir, index=index, max_inputs_per_request=64, max_queue_inputs=512))
    with live_server(app) as base:
        yield base


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_500(case, base_url) -> None:
    response = case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=60)
    assert response.status_code < 500
