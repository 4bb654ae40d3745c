"""Bearer-token auth: every route but ``/health`` (and the docs, which hold no data) needs
``Authorization: Bearer $FARM_API_TOKEN``.

The token is compared in constant time, as bytes so that a header with non-ASCII characters
is a 401 rather than a TypeError. An app without a token configured refuses every request
(``farm serve`` will not start without one, nor with a weak one: ``token_problem``): a
missing setting never opens the API. The token is never logged or echoed back.

The check runs twice: first in ``RequestGuard`` (orchestrator/api/guard.py), before the body
is read, then as the routes' dependency, which is what the OpenAPI document declares.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import HTTPException, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr

from orchestrator.api.deps import FarmDep

UNAUTHORIZED = "missing or wrong bearer token (Authorization: Bearer $FARM_API_TOKEN)"
# Long enough not to be guessed over the network; 16 URL-safe characters are 96 bits.
MIN_TOKEN_CHARS = 16

# auto_error=False: a missing header gets the same 401 as a wrong token, from one place.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="FarmApiToken",
    description="The value of FARM_API_TOKEN on the server.",
)


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot serve as FARM_API_TOKEN, or None. Whitespace is refused because
    a client's header can never carry it intact (HTTP strips it at the ends), so such a
    token would lock every caller out."""
    generate = "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if not token:
        return "set FARM_API_TOKEN: every route but /health needs it as a bearer token"
    if any(c.isspace() for c in token):
        return f"FARM_API_TOKEN contains whitespace, which no bearer header carries; {generate}"
    if len(token) < MIN_TOKEN_CHARS:
        return (
            f"FARM_API_TOKEN has {len(token)} characters; it needs at least "
            f"{MIN_TOKEN_CHARS}, {generate}"
        )
    return None


def token_matches(header: str | None, expected: SecretStr | None) -> bool:
    """Whether an ``Authorization`` header value carries the expected bearer token."""
    if expected is None or not expected.get_secret_value() or header is None:
        return False
    scheme, given = get_authorization_scheme_param(header)
    if scheme.lower() != "bearer" or not given:
        return False
    return secrets.compare_digest(
        given.encode("utf-8"), expected.get_secret_value().encode("utf-8")
    )


def unauthorized() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=UNAUTHORIZED,
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_token(
    farm: FarmDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    header = None if credentials is None else f"Bearer {credentials.credentials}"
    if not token_matches(header, farm.settings.api_token):
        raise unauthorized()
