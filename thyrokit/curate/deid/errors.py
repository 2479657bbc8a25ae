"""Why a file cannot be made safe: the reasons that send it to quarantine.

Every message names the reason and, at most, a DICOM tag or keyword: never a value,
so a message can go into logs and the quarantine table as it is.
"""

from __future__ import annotations


class QuarantineError(ValueError):
    """A file cannot be de-identified safely; the message is its PHI-free reason."""


class UnsupportedContentError(QuarantineError):
    """The object holds content whose identifying text cannot be checked (reports, documents, screenshots)."""


class MalformedElementError(QuarantineError):
    """An element is damaged, has the wrong VR, or is too large to check."""


class BurnedInTextError(QuarantineError):
    """Text burned into the pixels cannot be located for removal."""
