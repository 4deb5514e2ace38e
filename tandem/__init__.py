"""Tandem: a bank and a marketplace computing together on shared customers
without handing each other a single raw row."""

__version__ = "0.1.0"
