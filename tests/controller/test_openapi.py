"""The controller's OpenAPI document is valid, declares bearer auth the way clients read it,
documents each route's 401/404 as the routes really answer, and /docs works offline."""

from __future__ import annotations

import re
from typing import Any

import httpx
from openapi_spec_validator import validate

from camfleet.mosquitto import free_port

TOKEN = "openapi-token"


def test_openapi_document_is_valid_and_says_what_the_routes_do(controllers) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    controllers(http=f"127.0.0.1:{port}", token=TOKEN)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    spec: dict[str, Any] = http.get("/openapi.json").json()
    validate(spec)  # raises with the reason if the document breaks the OpenAPI spec

    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    writes = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            names = [p["name"].lower() for p in op.get("parameters", [])]
            assert "authorization" not in names, f"{where}: token as a header parameter"
            concrete = re.sub(r"\{[^}]+\}", "NOPE", path)
            if method == "get" and "x-camfleet-role" not in op:  # an open read
                assert "security" not in op, where
                if "{" in path:
                    assert "404" in op["responses"], f"{where}: 404 undocumented"
                    # Documented as answered: an id that names nothing is a 404.
                    assert http.get(concrete).status_code == 404, where
                continue
            writes += 1
            assert op["security"] == [{"bearerAuth": []}], where
            assert "401" in op["responses"], f"{where}: 401 undocumented"
            assert http.request(method, concrete, json={}).status_code == 401, where
            if "{" in path:
                assert "404" in op["responses"], f"{where}: 404 undocumented"
    assert writes >= 6


def test_docs_pages_load_every_asset_from_the_controller(controllers) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    controllers(http=f"127.0.0.1:{port}", token=TOKEN)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    for page, marker in (("/docs", b"SwaggerUIBundle"), ("/redoc", b"Redoc")):
        html = http.get(page).text
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
        urls += re.findall(r"""url:\s*["']([^"']+)["']""", html)
        assets = [u for u in urls if not u.startswith("data:")]
        assert assets, page
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            assert http.get(url).status_code == 200, url
        scripts = [u for u in assets if u.endswith(".js")]
        assert scripts and all(marker in http.get(u).content for u in scripts), page
