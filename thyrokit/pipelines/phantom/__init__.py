"""The demo phantom: a synthetic raw hospital dump of thyroid ultrasound.

``thyrokit demo-data OUT_DIR`` writes what a hospital would hand over (DICOM files,
exported PNG/JPEG frames, a partial labels sidecar) together with what no real dump
has: the ground truth of every nodule, every planted identifier and every burned-in
text box, so that tests and benchmarks can score each stage.

Modules, in the order an image is made:
``identities`` (made-up people and hospitals), ``scanner`` (site devices and scan
geometry), ``anatomy`` (neck structures), ``nodules`` (findings and their TI-RADS
features), ``speckle`` (B-mode formation), ``doppler`` (colour flow), ``chrome``
(burned-in text and calipers), ``dicom_files`` and ``exports`` (files),
``frames`` (one frame with all of the above), ``labels`` (sidecar and truth tables),
``montage`` (a contact sheet to look at), ``generate`` (one patient, and the whole dump).
"""

from thyrokit.pipelines.phantom.generate import generate_phantom

__all__ = ["generate_phantom"]
