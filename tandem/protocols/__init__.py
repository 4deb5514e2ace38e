"""Sans-I/O protocols: each role is a state machine (messages in, messages out, explicit
states, a terminal ERROR state). Drivers in ``tandem.transport`` move the messages."""
