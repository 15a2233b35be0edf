"""Schemathesis fuzzes every operation of /openapi.json: no 5xx, and every response matches the document.

Run in a fresh interpreter by test_openapi_fuzz.py (its file name keeps pytest from collecting it in the main run).
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from producer_api import create_app
from producer_api.config import Settings
from tests.unit.conftest import FakeProducer

app = create_app(Settings(max_body_bytes=64 * 1024, max_batch_messages=50), producer=FakeProducer())
schema = schemathesis.openapi.from_wsgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    # Schemathesis's check that invalid data is rejected does not accept 413, this service's documented answer to
    # a batch over the limit, so it is left out; every other check (no 5xx, valid data accepted, responses and
    # headers as documented) runs.
    response = case.call_and_validate(excluded_checks=[negative_data_rejection])
    assert response.status_code < 500
    if response.status_code >= 400:
        assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("path", ["/produce", "/produce/batch"])
def test_documented_error_shape_is_the_error_schema(path):
    operation = app.extensions["openapi"]["paths"][path]["post"]
    for status in ("400", "413", "422", "503"):
        assert operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
