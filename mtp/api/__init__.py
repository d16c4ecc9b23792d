"""The platform's gRPC API (``mtp serve``): the ``mtp.v1`` services over the scheduler and the
model registry, with a bearer token, TLS, health checking and reflection."""

from mtp.api.server import DEFAULT_PORT, ApiServer, ServerConfig, start_server

__all__ = ["DEFAULT_PORT", "ApiServer", "ServerConfig", "start_server"]
