"""Decide: online joint decisions (installments at checkout, seller credit lines) and batch scoring."""
