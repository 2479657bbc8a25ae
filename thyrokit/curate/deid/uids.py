"""Keyed replacement UIDs: the same original UID and secret always give the same new one.

A new UID is ``2.25.<integer>`` (PS3.5 B.2), the integer being 128 bits of an HMAC of
the original under the secret, so references stay consistent across files, studies
and runs, differ under another secret, and cannot be traced back without it.
"""

from __future__ import annotations

from pydicom.uid import UID_dictionary

from thyrokit.secret import keyed_digest

# Elements that name a class of object, a syntax or a coding scheme, never an instance:
# they carry no identity and must stay as they are for the object to be readable.
CLASS_UID_KEYWORDS = frozenset({
    "SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
    "ImplementationClassUID", "ReferencedSOPClassUIDInFile", "ReferencedTransferSyntaxUIDInFile",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "CodingSchemeUID",
    "AffectedSOPClassUID", "RequestedSOPClassUID", "SOPClassesInStudy",
    "MappingResourceUID", "ContextGroupExtensionCreatorUID", "PrivateInformationCreatorUID",
})


def is_well_known(uid: str) -> bool:
    """Return True for a UID the standard defines (SOP classes, transfer syntaxes, ...)."""
    return uid in UID_dictionary


def pseudonymise_uid(secret: bytes, uid: str) -> str:
    """Return the keyed ``2.25.`` UID that replaces `uid`; well-known UIDs come back unchanged."""
    uid = uid.strip().rstrip("\x00")
    if not uid or is_well_known(uid):
        return uid
    return f"2.25.{int(keyed_digest(secret, 'uid', uid)[:32], 16)}"
