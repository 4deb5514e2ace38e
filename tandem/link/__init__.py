"""Linking shared customers and sellers: which records take part, and the multi-key job."""
