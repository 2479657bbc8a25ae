"""thyrokit: raw thyroid scans to versioned, de-identified, labelled, class-balanced datasets."""

__version__ = "0.1.0"
