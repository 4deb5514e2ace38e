"""Protocol errors, split like h11's: what we did wrong vs what the peer did wrong."""

from tandem.errors import TandemError


class ProtocolError(TandemError):
    """A protocol run cannot continue."""


class LocalProtocolError(ProtocolError):
    """This side was asked to do something the protocol does not allow (a bug or a bad call)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, unexpected, or reported an error itself."""
