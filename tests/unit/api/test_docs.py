"""The OpenAPI document comes from the schemas, and Swagger UI is served locally."""


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert {"/", "/health", "/produce", "/produce/batch"} <= set(spec["paths"])
    request_schema = spec["components"]["schemas"]["ProduceRequest"]
    assert set(request_schema["required"]) == {"topic", "message"}
    assert set(request_schema["properties"]) == {"topic", "key", "message", "partition"}
    batch_body = spec["paths"]["/produce/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch_body["type"] == "array"
    assert {"400", "404", "413", "422", "503", "504"} <= set(spec["paths"]["/produce"]["post"]["responses"])


def test_docs_page_uses_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"/docs/assets/swagger-ui-bundle.js" in page.data
    assert b"http" not in page.data.split(b"<body>")[1]
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100000
    asset.close()


def test_security_is_declared_only_where_api_keys_are_configured(make_settings, producer):
    from producer_api import create_app
    from producer_api.config import ApiKey

    open_spec = create_app(make_settings(), producer=producer).test_client().get("/openapi.json").get_json()
    assert "securitySchemes" not in open_spec.get("components", {})
    assert "security" not in open_spec["paths"]["/produce"]["post"]
    assert "401" not in open_spec["paths"]["/produce"]["post"]["responses"]
    keyed = make_settings(api_keys=(ApiKey("team", "a-key-of-16-chars-or-more"),))
    keyed_spec = create_app(keyed, producer=producer).test_client().get("/openapi.json").get_json()
    assert set(keyed_spec["components"]["securitySchemes"]) == {"bearerKey", "headerKey"}
    assert keyed_spec["paths"]["/produce"]["post"]["security"] == [{"bearerKey": []}, {"headerKey": []}]
    assert "401" in keyed_spec["paths"]["/produce"]["post"]["responses"]
    assert "security" not in keyed_spec["paths"]["/health"]["get"]
