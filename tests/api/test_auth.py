"""Who may call: client credentials and short-lived tokens, revocation, rate limits, and an external
OpenID Connect issuer's tokens checked against its JWKS served on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from marketplace.entrypoints.server import create_app
from marketplace.services import api_clients
from marketplace.settings import Settings
from tests.api.conftest import Api
from tests.api.scenario import offer

pytestmark = pytest.mark.integration


async def test_tokens_from_client_credentials(api: Api):
    client_id, secret = await api.client("01", hsa_id="SE2321000016-NAV1")
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    issued = await api.http.post("/oauth/token", data=form)
    assert issued.status_code == 200 and issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == api.settings.api_token_ttl_s
    # The claims carry the organisation; the key is published as a JWKS.
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["role"], claims["region_code"], claims["org_number"], claims["hsa_id"]) == \
        ("region", "01", "232100-0016", "SE2321000016-NAV1")
    assert claims["exp"] - claims["iat"] == api.settings.api_token_ttl_s
    jwks = (await api.http.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    jwt.decode(body["access_token"], key, algorithms=["EdDSA"], audience="nvf-region-api")

    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    assert (await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                headers={"Authorization": f"Basic {basic}"})).status_code == 200
    wrong = await api.http.post("/oauth/token", data={**form, "client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert (await api.http.post("/oauth/token", data={**form, "grant_type": "password"})).json()["error"] == \
        "unsupported_grant_type"

    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await api.http.get("/v1/offers", headers=bearer)).status_code == 200
    # 401: no token, a forged one, an expired one; and a revoked client's token stops working at once.
    for headers in ({}, {"Authorization": "Bearer not.a.token"}, {"Authorization": "Basic abc"}):
        r = await api.http.get("/v1/offers", headers=headers)
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
    async with api.db.session() as session:
        row = await session.get(api_clients.ApiClientRow, client_id)
    assert row is not None and row.secret_hash.startswith("scrypt$") and secret not in row.secret_hash
    expired = api.app.state.nvf.issuer.issue(row, now=time.time() - 3600)
    assert (await api.http.get("/v1/offers", headers={"Authorization": f"Bearer {expired}"})).status_code == 401
    forged = jwt.encode({**claims, "region_code": "03", "org_number": "232100-0024"}, "k" * 32, algorithm="HS256")
    assert (await api.http.get("/v1/offers", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
    async with api.db.session() as session:
        assert await api_clients.revoke(session, client_id)
    assert (await api.http.get("/v1/offers", headers=bearer)).status_code == 401
    assert (await api.http.post("/oauth/token", data=form)).status_code == 401


async def test_bad_organisations_are_refused_when_clients_are_made(api: Api):
    async with api.db.session() as session:
        for kwargs in ({"role": "region", "region": "99"}, {"role": "region", "region": "01", "hsa_id": "SE232100"},
                       {"role": "region", "region": "01", "hsa_id": "SE2321000024-X"}, {"role": "admin"}):
            with pytest.raises(ValueError):
                await api_clients.create(session, name="x", **kwargs)


@pytest.fixture
def slow_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_rate": "3/minute"})


async def test_past_the_rate_a_client_gets_429_with_retry_after(slow_settings: Settings, database: Any,
                                                               redis_client: Any):
    app = create_app(slow_settings, slow_settings.redis_url or "", roles=(), sweeper=False)
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http):
            api = Api(app, http, slow_settings, database)
            for _ in range(3):
                assert (await api.get("01", "/v1/offers")).status_code == 200
            limited = await api.get("01", "/v1/offers")
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert limited.json()["type"].endswith("rate-limited")
            # The rate is per client: another client goes on.
            assert (await api.get("03", "/v1/offers")).status_code == 200


class _Jwks(BaseHTTPRequestHandler):
    document: bytes = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def identity_provider() -> Iterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    """An OpenID Connect issuer's JWKS (one ES256 key) served on 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    handler = type("Jwks", (_Jwks,), {"document": json.dumps({"keys": [{**jwk, "kid": "idp-1", "use": "sig",
                                                                         "alg": "ES256"}]}).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks", key
    server.shutdown()
    server.server_close()


async def test_an_external_issuers_tokens_are_accepted_instead(settings: Settings, database: Any, redis_client: Any,
                                                              identity_provider: Any):
    jwks_url, key = identity_provider
    issuer = "https://idp.example/oidc"
    configured = settings.model_copy(update={"oidc_issuer": issuer, "oidc_jwks_url": jwks_url,
                                             "oidc_audience": "nvf", "api_rate": "1000/second",
                                             "api_outcome_wait_s": 0.5})
    now = int(time.time())
    claims = {"iss": issuer, "aud": "nvf", "sub": "sys-42", "azp": "region-25-navigator", "iat": now,
              "exp": now + 300, "role": "region", "region_code": "25", "org_number": "232100-0230",
              "hsa_id": "SE2321000230-NAV"}

    def token(**change: Any) -> dict[str, str]:
        signed = jwt.encode({**claims, **change}, key, algorithm="ES256", headers={"kid": "idp-1"})
        return {"Authorization": f"Bearer {signed}"}

    app = create_app(configured, configured.redis_url or "", roles=(), sweeper=False)
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http):
            assert (await http.get("/v1/requests", headers=token())).status_code == 200
            assert (await http.get("/v1/requests", headers=token(iss="https://other"))).status_code == 401
            assert (await http.get("/v1/requests", headers=token(aud="else"))).status_code == 401
            assert (await http.get("/v1/requests", headers=token(exp=now - 600))).status_code == 401
            # A valid token whose organisation does not hold together learns nothing.
            mismatch = await http.get("/v1/requests", headers=token(org_number="232100-0016"))
            assert mismatch.status_code == 403
            assert (await http.get("/v1/requests", headers=token(role="admin"))).status_code == 403
            # The embedded token endpoint is off: tokens come from the issuer.
            refused = await http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "a",
                                                            "client_secret": "b"})
            assert refused.status_code == 400
            # A write through the issuer's token, audited under its client.
            posted = await http.post("/v1/offers", json=offer("off-x", hsa="SE2321000230-A"),
                                     headers={**token(), "Idempotency-Key": "k-1"})
            assert posted.status_code == 202  # no workers here: published, intake not running
            assert posted.json()["status"] == "queued"
