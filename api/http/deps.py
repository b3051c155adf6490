"""FastAPI dependencies: the service context and the caller's role."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from api.composition import ServiceContext
from api.http.security import credentials
from api.services.auth import AuthError, ForbiddenError, Principal, Role


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.context
    return ctx


def principal_of(request: Request) -> Principal:
    """The caller as ``api.http.security.Gatekeeper`` authenticated it before the body was read (a bearer key, or
    the review page's session cookie on the routes that take it); on a route the gatekeeper leaves open, from a
    bearer key only (a cookie there would bypass its CSRF checks)."""
    state = request.scope.get("state", {})
    if "authenticated" in state:
        found: Principal | None = state["authenticated"]
        if found is None:
            raise AuthError("not signed in")
        return found
    principal, _session = credentials(context(request).keys, request.headers, cookie_ok=False)  # bearer only
    return principal


def require(*roles: Role) -> Callable[[Request], Principal]:
    """A dependency admitting ``roles`` (and admin); 401 without valid credentials, 403 for other roles."""
    allowed = frozenset(roles)

    def dependency(request: Request) -> Principal:
        principal = principal_of(request)
        if not principal.allowed(allowed):
            names = ", ".join(sorted(r.value for r in allowed | {Role.ADMIN}))
            raise ForbiddenError(f"role {principal.role.value} may not do this (needs one of: {names})")
        request.state.principal = principal
        return principal

    return dependency


CAMERA = require(Role.CAMERA)
LINE = require(Role.CAMERA, Role.OPERATOR)
OPERATOR = require(Role.OPERATOR)
READER = require(Role.OPERATOR, Role.ENGINEER)
ENGINEER = require(Role.ENGINEER)
ADMIN = require(Role.ADMIN)
