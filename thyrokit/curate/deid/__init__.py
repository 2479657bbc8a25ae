"""De-identification: DICOM PS3.15 Basic Profile headers, burned-in text, PHI audit.

The entry points ingest calls per file are :func:`deidentify_dataset` (header) and
:func:`redact_burned_in_text` (pixels); both raise or return nothing that names a value.
"""

from thyrokit.curate.deid.burned_in_text import (redact_burned_in_text, redact_frames, redact_scan_area,
                                                 require_scan_area)
from thyrokit.curate.deid.errors import (BurnedInTextError, MalformedElementError, QuarantineError,
                                         UnsupportedContentError)
from thyrokit.curate.deid.header import HeaderAudit, deidentify_dataset
from thyrokit.curate.deid.options import DeidOptions

__all__ = [
    "BurnedInTextError", "DeidOptions", "HeaderAudit", "MalformedElementError", "QuarantineError",
    "UnsupportedContentError", "deidentify_dataset", "redact_burned_in_text", "redact_frames", "redact_scan_area",
    "require_scan_area",
]
