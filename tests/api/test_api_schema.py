"""Schemathesis over the published OpenAPI: generated requests to every operation (with a
valid token, on a real journal) never get a server error and every response conforms to
the document (status codes, content types, bodies). Optional: skipped without
schemathesis."""

from __future__ import annotations

import pytest

from api.helpers import bearer, login, make_client

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is optional "
                                   "(pip install schemathesis==4.32.5)")
from hypothesis import HealthCheck, given, settings  # noqa: E402

pytestmark = pytest.mark.slow


def test_every_operation_conforms_to_the_openapi(finished_run, user, data_dir) -> None:
    from perptrader.api import create_app
    from perptrader.config import load_settings

    app = create_app(load_settings())
    with make_client(app) as client:
        auth = bearer(login(client))
        schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 25
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=12, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                # a logout revokes its token: give it its own
                headers = bearer(login(client)) if case.path.endswith("/auth/logout") \
                    else auth
                case.call_and_validate(headers=headers)

            check()
