"""daphne with the portal's websocket limits: ``python -m firezone_site.webserver [daphne args]``.

daphne's command line sets the message/frame limit but not how a connection over it ends, and
autobahn (under daphne) then *drops* the TCP connection (``failByDrop``), so an agent that sent too
much cannot tell why its socket vanished. Here the websocket factory fails connections with a
closing handshake instead: a frame over :data:`agents.protocol.MAX_FRAME_BYTES` is answered with
close code 1009 (message too big), protocol violations with 1002.
"""

from __future__ import annotations

from typing import Any

from agents.protocol import MAX_FRAME_BYTES

#: Options every portal process passes to daphne (``manage.py serve`` and the e2e tests' portal).
DAPHNE_OPTIONS: tuple[str, ...] = (
    "--websocket-max-message-size",
    str(MAX_FRAME_BYTES),
    "--websocket-max-frame-size",
    str(MAX_FRAME_BYTES),
    # Agents reconnect anyway, but there is no reason to cut healthy sockets daily.
    "--websocket_timeout",
    "-1",
)


def main() -> None:
    # Imported here, not at the top: daphne.server installs the asyncio reactor on import, which
    # only the server process should do (``manage.py serve`` imports DAPHNE_OPTIONS from here).
    from daphne import server as daphne_server
    from daphne.cli import CommandLineInterface
    from daphne.ws_protocol import WebSocketFactory

    class ClosingWebSocketFactory(WebSocketFactory):  # type: ignore[misc]
        """daphne's factory, failing connections with a close frame rather than a TCP drop."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.setProtocolOptions(failByDrop=False)

    daphne_server.WebSocketFactory = ClosingWebSocketFactory
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
