"""The API's bearer token: where it comes from and the interceptor that checks every call.

Every call must carry the metadata ``authorization: Bearer <token>``; any other call ends
with ``UNAUTHENTICATED`` before it reaches a servicer. The health-checking service is the one
exception (load balancers and orchestrators probe it without credentials); it tells only
whether the server is serving.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from mtp_core.errors import InputError

__all__ = ["TOKEN_ENV", "TokenInterceptor", "load_token"]

TOKEN_ENV = "MTP_API_TOKEN"
_OPEN = ("/grpc.health.v1.Health/",)
_MIN_LENGTH = 16


def load_token(token_file: str | Path | None) -> str:
    """The token from ``token_file`` (its first line) or ``MTP_API_TOKEN``; "" when neither
    is set. A file that cannot be read, or a token shorter than 16 characters, is refused."""
    if token_file is not None:
        path = Path(token_file)
        try:
            lines = path.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"--token-file {token_file}: cannot be read ({err})") from None
        token = lines[0].strip() if lines else ""
        where = f"--token-file {token_file}"
        if not token:
            raise InputError(f"{where}: the file is empty; it must hold the token")
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        where = TOKEN_ENV
    if token and len(token) < _MIN_LENGTH:
        raise InputError(f"{where}: the token has {len(token)} characters; allowed: at least "
                         f"{_MIN_LENGTH} (e.g. `python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))'`)")
    return token


def _deny(message: str) -> grpc.RpcMethodHandler:
    def abort(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class TokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method.startswith(_OPEN):
            return continuation(handler_call_details)
        sent = dict(handler_call_details.invocation_metadata or ()).get("authorization")
        if sent is None:
            return _deny(f"{method}: no `authorization: Bearer <token>` metadata")
        given = sent.encode() if isinstance(sent, str) else bytes(sent)
        if not hmac.compare_digest(given, self._expected):
            return _deny(f"{method}: the bearer token is not this server's")
        return continuation(handler_call_details)
