"""Logging setup: readable lines for people by default, JSON lines for machines."""

from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(*, json_lines: bool = False, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def adopt_libp2p() -> None:
    """Send py-libp2p's log records through our handlers (and format), at WARNING and up.

    Importing py-libp2p detaches its "libp2p" logger from the root (``propagate = False``,
    no handler), so its warnings reached stderr as bare lines through logging's last-resort
    handler, not as JSON under ``--log-json``. With ``--verbose`` its INFO lines show too.
    """
    import libp2p  # noqa: F401  (its import configures the logger; undo that after it)

    verbose = logging.getLogger().level <= logging.DEBUG
    library = logging.getLogger("libp2p")
    library.handlers.clear()
    library.propagate = True
    library.setLevel(logging.INFO if verbose else logging.WARNING)
    # a dial that fails is routine in a P2P swarm (membership counts it and backs off), yet
    # py-libp2p logs each attempt at ERROR: only with --verbose
    logging.getLogger("libp2p.transport.tcp").setLevel(logging.INFO if verbose else logging.CRITICAL)
    # a neighbour that is no edgeswarm node (a Go relay, an IPFS peer) answers "na" to our
    # protocols: the transport counts it (``protocol_unsupported``) and services stop asking,
    # yet py-libp2p logs each at ERROR with a dozen lines of connection state
    if not verbose:
        logging.getLogger("libp2p.host.basic_host").addFilter(_not_an_unsupported_protocol)


def _not_an_unsupported_protocol(record: logging.LogRecord) -> bool:
    return not (
        record.getMessage().startswith("Failed to open stream") and "protocols not supported" in record.getMessage()
    )


def adopt_flower() -> None:
    """Send Flower's log records through our handlers only, once each, without colour codes.

    Importing Flower adds its own coloured console handler to the "flwr" logger while
    records still propagate to the root: every line came out twice, once with raw ANSI
    escapes, also under ``--log-json``. Its INFO lines (per round) stay visible at INFO.
    """
    import flwr.common.logger  # noqa: F401  (its import adds the handler; undo that after it)

    library = logging.getLogger("flwr")
    library.handlers.clear()
    library.propagate = True
