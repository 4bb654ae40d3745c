"""Bearer-token auth: every route but ``/health`` (and the docs, which hold no data) needs
``Authorization: Bearer $FARM_API_TOKEN``.

The token is compared in constant time, as bytes so that a header with non-ASCII characters
is a 401 rather than a TypeError. An app without a token configured refuses every request
(``farm serve`` will not start without one): a missing setting never opens the API. The
token is never logged or echoed back.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import HTTPException, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.api.deps import FarmDep

# auto_error=False: a missing header gets the same 401 as a wrong token, from one place.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="FarmApiToken",
    description="The value of FARM_API_TOKEN on the server.",
)


def unauthorized() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or wrong bearer token (Authorization: Bearer $FARM_API_TOKEN)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_token(
    farm: FarmDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    expected = farm.settings.api_token
    if expected is None or not expected.get_secret_value() or credentials is None:
        raise unauthorized()
    given = credentials.credentials.encode("utf-8")
    if not secrets.compare_digest(given, expected.get_secret_value().encode("utf-8")):
        raise unauthorized()
