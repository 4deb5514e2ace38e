"""Identifier normalisation: phones to E.164, e-mails to a canonical lower-case form.

Invalid values are never guessed or silently dropped: each batch call returns a
``NormalisationReport`` that counts them by reason and keeps a few examples.
"""

from tandem.ids.normalise import (
    InvalidIdentifier,
    NormalisationReport,
    normalise_email,
    normalise_emails,
    normalise_inn,
    normalise_inns,
    normalise_phone,
    normalise_phones,
)

__all__ = [
    "InvalidIdentifier",
    "NormalisationReport",
    "normalise_email",
    "normalise_emails",
    "normalise_inn",
    "normalise_inns",
    "normalise_phone",
    "normalise_phones",
]
