"""Drivers that move protocol messages: an in-memory pair (tests), gRPC with mutual TLS (nodes) and
HTTPS for the decision services; each audits every message it carries."""

import os

# gRPC core logs failed TLS handshakes at INFO on stderr; a refused peer is reported by the node as
# one error line instead. Read when gRPC starts, so set before any of this package imports it.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
