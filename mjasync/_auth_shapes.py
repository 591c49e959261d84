"""Who refused a key, from the shape of the refusal: each server answers 401 its own way.

`auth_shape` reads the status and body of an authentication failure and names the
server that answers that way and the ``auth=`` styles it reads; `AuthenticationError`
shows it (``refused_by``, ``reads_auth``) and the client's message builds on it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["auth_shape", "is_newapi_error"]


def is_newapi_error(body: object) -> bool:
    """new-api's own ``{"error": {"message", "type": "new_api_error", "code"}}`` shape."""
    if not isinstance(body, Mapping):
        return False
    error = body.get("error")
    return isinstance(error, Mapping) and isinstance(error.get("message"), str)


def auth_shape(status: int, body: object) -> tuple[str, tuple[str, ...]]:
    """Who refuses this way, and the ``auth=`` styles that server reads (preferred first).

    The sentence is empty, and the styles too, when the refusal looks like no server
    in particular.
    """
    if status == 401 and body is None:
        # novicezk ApiAuthorizeInterceptor.java: status 401, nothing written; it reads
        # only the mj-api-secret header (Constants.API_SECRET_HEADER_NAME).
        return (
            "an empty 401 is how novicezk's midjourney-proxy refuses a missing or wrong "
            "mj-api-secret header",
            ("mj-api-secret",),
        )
    if isinstance(body, str) and "Authorization header missing" in body:
        # trueai SimpleAuthMiddleware.cs: no user has exactly this token. WorkContext.cs
        # reads Authorization (else Mj-Api-Secret) and compares the raw value, so
        # "Bearer <key>" never matches.
        return (
            'trueai answers "Authorization header missing." when no user has exactly '
            'this key; it reads the raw key from Authorization (no "Bearer ") or from '
            "mj-api-secret",
            ("authorization", "mj-api-secret"),
        )
    if is_newapi_error(body):
        # new-api middleware/auth.go TokenAuth: abortWithOpenAiMessage(401, ...). It takes
        # "Bearer <key>", a raw key, or mj-api-secret when Authorization is empty.
        return (
            "this is new-api's refusal; new-api reads the key in any of the three styles "
            '(its documented one is "Authorization: Bearer <key>")',
            ("bearer", "authorization", "mj-api-secret"),
        )
    return ("", ())
