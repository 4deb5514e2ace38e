"""Sans-I/O protocols: each role is a state machine (messages in, messages out, explicit
states, a terminal ERROR state) built on ``role.Role``; ``wire`` holds the messages and
``framing`` the layout of their binary payloads. Drivers move the messages over
``tandem.transport``. Generic on purpose: nothing here imports ``learn``, ``insight``,
``decide`` or ``offers`` (SecureBoost's roles, which need the learning maths, live in
``tandem.learn.secureboost`` on this base)."""

# importing the message types registers them, so any frame a node receives can be decoded
from tandem.protocols import wire as _wire  # noqa: F401
