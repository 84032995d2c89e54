"""A manager's opening: its port and credentials first, then its workers, then the manager.

Loading the manager's own modules and starting its threads takes about as long as a worker
takes to start serving, so a manager is opened in this order: the listening port (and the
port file, the secret and the TLS context: whatever a bad option fails on, before any worker
exists), then the provider's workers, told where the port is, then the manager itself,
loaded and started while they start. A worker that connects before the manager's loop runs
waits in the port's backlog, as it does whenever the loop is busy.

This module loads none of the manager's parts until the workers are on their way.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, NamedTuple

from vinemake.backends import ManagerAddress, ProviderOptions, WorkerProvider
from vinemake.common.errors import InfrastructureError
from vinemake.manager.config import ManagerConfig
from vinemake.wire.protocol import read_secret, server_context

if TYPE_CHECKING:
    import ssl

    from vinemake.manager.manager import Manager

__all__ = ["Opening", "open_manager", "open_port", "start"]


class Opening(NamedTuple):
    """What a manager holds before anything connects."""

    listener: socket.socket  # listening, non-blocking
    port: int
    secret: bytes | None
    ssl_context: ssl.SSLContext | None  # None without --ssl


def open_manager(config: ManagerConfig) -> Opening:
    """Check the secret and the TLS options, then open the port."""
    secret = read_secret(config.password_file)
    ssl_context = _tls(config)
    listener, port = open_port(config)
    return Opening(listener, port, secret, ssl_context)


def open_port(config: ManagerConfig) -> tuple[socket.socket, int]:
    """The port workers connect to (non-blocking), named in the port file if asked."""
    listener = socket.create_server((config.host, config.port))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    if config.port_file:
        try:
            _write_port_file(config.port_file, port)
        except OSError:
            listener.close()
            raise
    return listener, port


def _write_port_file(path: str, port: int) -> None:
    """Name the port in `path` whole or not at all; an error names `path`, not the temporary."""
    try:
        with open(path + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.replace(path + ".tmp", path)
    except OSError as e:
        raise OSError(e.errno, f"cannot write the port file {path}: {e.strerror}") from None


def _tls(config: ManagerConfig) -> ssl.SSLContext | None:
    """The server side of TLS when --ssl is on (certificate and key required)."""
    if not config.ssl:
        return None
    if not (config.ssl_cert and config.ssl_key):
        raise InfrastructureError("--ssl needs a certificate and a key")
    return server_context(config.ssl_cert, config.ssl_key)


def start(config: ManagerConfig, provider: WorkerProvider | None = None,
          provider_options: ProviderOptions | None = None, events=None) -> Manager:
    """Open the port, ask `provider` (if any) to start workers that connect there, then load
    and start the manager on that port. If the manager cannot start, the workers are stopped."""
    opening = open_manager(config)
    try:
        if provider is not None:
            provider.start(ManagerAddress(config.host, opening.port, config.password_file,
                                          config.ssl), provider_options or ProviderOptions())
        from vinemake.manager.manager import Manager

        return Manager(config, provider, events, opening)
    except BaseException:
        if provider is not None:
            provider.close()
        opening.listener.close()
        raise
