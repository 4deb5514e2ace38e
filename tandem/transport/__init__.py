"""Drivers that move protocol messages: an in-memory pair (tests) and gRPC with mutual TLS (nodes)."""
