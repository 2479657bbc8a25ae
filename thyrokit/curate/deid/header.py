"""Apply the Basic Profile and its options to a pydicom Dataset, recursing into every sequence.

:func:`deidentify_dataset` returns a new Dataset and a :class:`HeaderAudit` that records,
per attribute keyword (never per value), which action was taken. Identifiers become the
keyed pseudonyms of :mod:`thyrokit.curate.identity`, UIDs keyed ``2.25.`` UIDs, dates
move by a keyed per-patient shift. Private elements go unless on the safe list;
overlays, curves, icons and anything whose content cannot be checked go too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_sequence
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from thyrokit import __version__
from thyrokit.curate import identity
from thyrokit.curate.deid.dates import date_shift_days, shift_date, shift_datetime
from thyrokit.curate.deid.descriptors import clean_descriptor
from thyrokit.curate.deid.errors import MalformedElementError, UnsupportedContentError
from thyrokit.curate.deid.options import DeidOptions
from thyrokit.curate.deid.profile import STANDARD, action_table, method_codes
from thyrokit.curate.deid.uids import CLASS_UID_KEYWORDS, pseudonymise_uid
from thyrokit.secret import pseudonym

METHOD = f"{STANDARD}; thyrokit {__version__}"

# Dummy values (action D) by VR; identifiers with a keyed pseudonym are in _PSEUDONYMS.
DUMMY = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DS": "0",
    "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED",
    "PN": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED", "TM": "000000",
    "UC": "ANONYMIZED", "UR": "", "UT": "ANONYMIZED",
    "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0, "UV": 0,
}
_PSEUDONYMS = {
    "PatientID": lambda secret, value: identity.patient_id(secret, value),
    "AccessionNumber": lambda secret, value: pseudonym(secret, "acc", value.strip(), length=12),
    "StudyID": lambda secret, value: pseudonym(secret, "st", value.strip(), length=13),
}
TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT", "PN", "CS"})
# VRs whose values pydicom decodes as text: decoding them never fails, so an emptied one need not be read.
STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
                        "UC", "UI", "UR", "UT"})
# VRs pydicom decodes as Latin-1 strings split at backslashes (dates as text): read straight from the bytes.
ASCII_VRS = frozenset({"DA", "DT", "TM", "UI"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# SOP classes whose content is free text or another document: no header profile can check it.
_UNSUPPORTED_CLASS_WORDS = ("SR Storage", "Structured Report", "Encapsulated", "Key Object",
                            "Presentation State", "Raw Data")
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})


@dataclass
class HeaderAudit:
    """What de-identification did to one file: action per attribute path, counts, codes."""

    method: str
    codes: list[str]
    actions: dict[str, str] = field(default_factory=dict)
    private_removed: int = 0
    private_kept: int = 0
    date_shift_applied: bool = False
    redacted: dict[int, list[tuple[int, int, int, int]]] = field(default_factory=dict)

    def record(self, path: str, action: str) -> None:
        """Note that `action` was taken on the attribute at `path` (keywords joined by '/')."""
        self.actions[path] = action

    def add_redactions(self, frame: int, boxes: list[tuple[int, int, int, int]]) -> None:
        """Note the pixel boxes masked in `frame`."""
        if boxes:
            self.redacted.setdefault(frame, []).extend(tuple(int(v) for v in box) for box in boxes)

    def to_dict(self) -> dict[str, Any]:
        """Return the audit as a JSON-serialisable mapping with sorted keys."""
        return {
            "method": self.method,
            "codes": list(self.codes),
            "actions": dict(sorted(self.actions.items())),
            "private_removed": self.private_removed,
            "private_kept": self.private_kept,
            "date_shift_applied": self.date_shift_applied,
            "redacted": {str(frame): [list(box) for box in boxes]
                         for frame, boxes in sorted(self.redacted.items())},
        }


@dataclass(frozen=True)
class _Context:
    secret: bytes
    options: DeidOptions
    safe_private: frozenset[tuple[int, str, int]]
    shift_days: int
    descriptor_words: frozenset[str]
    audit: HeaderAudit


def check_supported(ds: Dataset, options: DeidOptions) -> None:
    """Raise a QuarantineError if `ds` is an object whose identity the profile cannot remove."""
    sop_class = str(ds.get("SOPClassUID", "") or "")
    name = getattr(ds.get("SOPClassUID"), "name", "") if sop_class else ""
    if any(word in name for word in _UNSUPPORTED_CLASS_WORDS) or ds.get("Modality") in ("SR", "DOC", "KO", "PR"):
        raise UnsupportedContentError(
            f"{name or ds.get('Modality')} object: reports, documents and presentation states "
            "carry free text that cannot be checked")
    if "EncapsulatedDocument" in ds:
        raise UnsupportedContentError("encapsulated document: its content cannot be checked")
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX) and not options.allow_secondary_capture:
        raise UnsupportedContentError(
            "secondary-capture object: a workstation screenshot may show identity anywhere "
            "(set deid.allow_secondary_capture to accept them)")
    _check_pixel_length(ds)


def _check_pixel_length(ds: Dataset) -> None:
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        return
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and str(syntax) not in _NATIVE_SYNTAXES:
        return  # encapsulated frames: the decoder finds a truncation
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
        pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * frames
    except (TypeError, ValueError, AttributeError):
        raise MalformedElementError("image pixel module is incomplete or unreadable") from None
    expected = (pixels * bits + 7) // 8
    actual = _value_length(ds, Tag(0x7FE00010))
    if actual < expected:
        raise MalformedElementError(
            f"pixel data holds {actual} bytes where the header needs {expected}: truncated file")


def peek(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """Return the value of `keyword` in `ds` (`default` if absent), leaving a raw element raw.

    ``ds.get`` puts the decoded element back into `ds`; kept as read, a raw element is
    copied by the writer, a decoded one is encoded again at several times the cost.
    Only for a dataset already de-identified: in a source dataset, decoding an element
    read as UN gives it its dictionary VR, which decides whether it is kept.
    """
    item = ds.get_item(keyword)
    if item is None:
        return default
    if isinstance(item, RawDataElement):
        return convert_raw_data_element(item, encoding=ds.original_character_set, ds=ds).value
    return item.value


def _value_length(ds: Dataset, tag: BaseTag) -> int:
    """Return the byte length of the value at `tag` without decoding it where possible."""
    item = ds.get_item(tag)
    if isinstance(item, RawDataElement):
        return item.length if item.length != 0xFFFFFFFF else len(item.value or b"")
    value = item.value
    return len(value) if isinstance(value, (bytes, str)) else 0


def patient_key(ds: Dataset) -> str:
    """Return the raw value that identifies the patient of `ds` (PatientID, else the study UID)."""
    return str(ds.get("PatientID", "") or ds.get("StudyInstanceUID", "") or "").strip()


def deidentify_dataset(ds: Dataset, secret: bytes, options: DeidOptions) -> tuple[Dataset, HeaderAudit]:
    """Return a de-identified copy of `ds` and the audit of what was done; `ds` is left unchanged.

    Raises a :class:`~thyrokit.curate.deid.errors.QuarantineError` for an object that cannot
    be made safe: reports, documents, screenshots, damaged or uncheckable elements.
    """
    check_supported(ds, options)
    audit = HeaderAudit(method=METHOD, codes=[code for code, _ in method_codes(options)])
    context = _Context(
        secret=secret, options=options,
        safe_private=options.parse_safe_private(),
        shift_days=date_shift_days(secret, patient_key(ds), options.date_shift_max_days),
        descriptor_words=frozenset(word.upper() for word in options.descriptor_words),
        audit=audit,
    )
    out = _clean_dataset(ds, context, path="")
    _copy_encoding(ds, out)
    _mark_deidentified(out, options, audit)
    return out, audit


def _clean_dataset(ds: Dataset, context: _Context, path: str) -> Dataset:
    plain: dict[BaseTag, DataElement | RawDataElement] = {}
    sequences: list[DataElement] = []
    kept_private: list[BaseTag] = []
    for tag in sorted(ds.keys()):
        if tag.is_private:
            if _keep_private(ds, tag, context, path):
                kept_private.append(tag)
            continue
        cleaned = _clean_element(ds, tag, context, path)
        if cleaned is None:
            continue
        if isinstance(cleaned, DataElement) and cleaned.VR == "SQ":
            sequences.append(cleaned)
        else:
            plain[tag] = cleaned
    # Plain public elements go into the new dataset's mapping as they are; sequences and
    # private elements go through Dataset.__setitem__, which links them to their dataset.
    out = Dataset(plain)
    for element in sequences:
        out[element.tag] = element
    kept_creators: set[int] = set()
    for tag in kept_private:
        out[tag] = ds[tag]
        kept_creators.add(Tag(tag.group, tag.element >> 8))
    for creator in kept_creators:
        out[creator] = ds[creator]
    _clean_local_code_meaning(out, context, path)
    return out


def _clean_local_code_meaning(item: Dataset, context: _Context, path: str) -> None:
    """Reduce the meaning of a locally defined code (scheme 99*) to safe words: it is free text."""
    if "CodeMeaning" not in item:
        return
    scheme = str(item.get("CodingSchemeDesignator", "") or "")
    if scheme and not scheme.startswith("99"):
        return  # a standard scheme's meaning is its published text
    _set_text(item, "CodeMeaning", clean_descriptor(str(item.CodeMeaning), context.descriptor_words) or "UNSPECIFIED")
    context.audit.record(path + "CodeMeaning", "C")


def _keep_private(ds: Dataset, tag: BaseTag, context: _Context, path: str) -> bool:
    size = _value_length(ds, tag)
    if size > context.options.max_private_bytes:
        raise MalformedElementError(
            f"private element {tag} holds {size} bytes, over deid.max_private_bytes: "
            "it may embed a report or image")
    if tag.is_private_creator:
        return False  # kept only with a safe element that it reserves
    creator_tag = Tag(tag.group, tag.element >> 8)
    creator = str(ds[creator_tag].value).strip() if creator_tag in ds else ""
    if (tag.group, creator, tag.element & 0xFF) in context.safe_private:
        context.audit.private_kept += 1
        return True
    context.audit.private_removed += 1
    return False


def _clean_element(ds: Dataset, tag: BaseTag, context: _Context, path: str) -> DataElement | RawDataElement | None:
    """Return the de-identified element at `tag` of `ds`, or None if it is removed."""
    raw = ds.get_item(tag)
    name, vr, action, recorded = element_plan(int(tag), raw.VR, context.options)
    if recorded:
        context.audit.record(path + name, action)
    if action == "X":
        return None
    keyword, where = name, path + name
    if action == "K" and vr != "SQ":
        return raw  # kept as read: no need to decode it
    if action == "Z" and vr in STRING_VRS:
        return new_element(tag, vr, "")  # emptied whatever it held: no need to decode it either
    if vr in ASCII_VRS and isinstance(raw, RawDataElement) and not pydicom_config.datetime_conversion:
        value = ascii_value(raw.value or b"")
        if value == "":
            return new_element(tag, vr, "")
        return _apply(tag, vr, value, action, keyword, context, unchanged=new_element(tag, vr, value))
    try:
        element = ds[tag]
    except Exception:  # pydicom raises many types for undecodable values
        raise MalformedElementError(f"element {keyword} {tag} cannot be decoded") from None
    if element.VR == "SQ":
        return _clean_sequence(element, action, context, where, raw)
    if element.VR in BINARY_VRS or element.value is None or element.value == "":
        return element if action in ("K", "C", "U") else new_element(tag, element.VR, _empty(element.VR))
    return _apply(tag, element.VR, element.value, action, keyword, context, unchanged=element)


def ascii_value(data: bytes) -> str | list[str]:
    """Return a DA, DT, TM or UI value decoded as pydicom decodes it: one string, or a list of several."""
    items = data.decode("latin-1").rstrip(" \x00").split("\\")
    return items[0] if len(items) == 1 else items


@lru_cache(maxsize=8192)
def element_plan(tag: int, raw_vr: str | None, options: DeidOptions) -> tuple[str, str, str, bool]:
    """Return (audit name, VR, action, whether the audit records it) for a public element as read.

    The answer depends only on the tag, the VR it was read with and the options, so it is
    worked out once per (tag, VR) and reused for every element of every file.
    """
    group = tag >> 16
    if group in (0x0000, 0x0002) or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
        name = {0x0000: "CommandGroup", 0x0002: "FileMetaInDataset"}.get(group, "")
        return name or ("Curve" if group < 0x6000 else "Overlay"), raw_vr or "", "X", True
    if not dictionary_has_tag(tag):
        return str(Tag(tag)), raw_vr or "", "X", True  # an unknown public element cannot be checked
    keyword = keyword_for_tag(tag)
    vr = raw_vr or dictionary_VR(tag)  # implicit VR files leave the VR to the dictionary
    listed = action_table(options).get(tag)
    action = listed[1] if listed else _unlisted_action(keyword, vr, options)
    if action == "X" or vr == "UN":  # UN: a value of unknown type cannot be checked
        return keyword, vr, "X", True
    _check_vr(Tag(tag), vr, keyword)
    return keyword, vr, action, bool(listed) or action != "K"


def _unlisted_action(keyword: str, vr: str, options: DeidOptions) -> str:
    """Return the action for an attribute the profile does not list."""
    if vr == "UI":
        return "K" if keyword in CLASS_UID_KEYWORDS else "U"
    if vr in ("DA", "DT"):
        # The profile keeps unlisted dates; a real date beside shifted ones would undo the shift.
        return "C" if options.retain_longitudinal_modified_dates else "X"
    return "K"


def _check_vr(tag: BaseTag, vr: str, keyword: str) -> None:
    expected = dictionary_VR(tag)
    if vr != expected and vr not in expected.split(" or "):
        raise MalformedElementError(f"element {keyword} has VR {vr}, the standard says {expected}")


def _clean_sequence(element: DataElement, action: str, context: _Context, where: str,
                    raw: DataElement | RawDataElement) -> DataElement | RawDataElement:
    """Return the sequence with every item cleaned; as read (`raw`) when cleaning changed nothing in it."""
    if action in ("Z", "D"):
        return DataElement(element.tag, "SQ", Sequence())
    items = [_clean_dataset(item, context, where + "/") for item in element.value]
    if isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF and all(
            _unchanged(item, cleaned) for item, cleaned in zip(element.value, items)):
        return raw  # the writer copies its bytes instead of encoding every element again
    return DataElement(element.tag, "SQ", Sequence(items))


def _unchanged(item: Dataset, cleaned: Dataset) -> bool:
    """Return whether cleaning `item` kept each of its elements, and only those, as the very same objects."""
    return item.keys() == cleaned.keys() and all(cleaned.get_item(tag) is item.get_item(tag) for tag in item.keys())


def new_element(tag: BaseTag, vr: str, value: Any) -> DataElement | RawDataElement:
    """Return an element holding `value`, already encoded as pydicom would write it when it is ASCII text.

    Writing a decoded element costs the writer several times what copying encoded bytes
    does, and ASCII text encodes the same in every DICOM character set.
    """
    values = value if isinstance(value, list) else [value]
    if vr == "SQ" or not all(isinstance(item, str) and item.isascii() for item in values):
        return DataElement(tag, vr, value)
    encoded = "\\".join(values).encode("ascii")
    if len(encoded) % 2:
        encoded += b"\x00" if vr == "UI" else b" "
    return RawDataElement(Tag(tag), vr, len(encoded), encoded, 0, False, True)


def _set_text(ds: Dataset, keyword: str, value: str) -> None:
    """Set the element `keyword` of `ds` to the text `value`, pre-encoded."""
    tag = Tag(keyword)
    ds[tag] = new_element(tag, dictionary_VR(tag), value)


def _empty(vr: str) -> Any:
    return None if vr in BINARY_VRS or vr in DUMMY and not isinstance(DUMMY[vr], str) else ""


def _apply(tag: BaseTag, vr: str, value: Any, action: str, keyword: str, context: _Context,
           unchanged: DataElement | RawDataElement) -> DataElement | RawDataElement | None:
    """Return the element `action` makes of a non-empty `value`; `unchanged` where the value stays."""
    if action == "K":
        return unchanged
    if action == "Z":
        return new_element(tag, vr, _empty(vr))
    if action == "U" or (action == "D" and vr == "UI"):
        if vr != "UI":
            return unchanged
        return new_element(tag, vr, _map_values(value, lambda uid: pseudonymise_uid(context.secret, str(uid))))
    if action == "D":
        if keyword in _PSEUDONYMS:
            return new_element(tag, vr, _PSEUDONYMS[keyword](context.secret, str(value)))
        return new_element(tag, vr, DUMMY.get(vr, _empty(vr)))
    # action C
    if vr == "DA" or vr == "DT":
        shift = shift_date if vr == "DA" else shift_datetime
        try:
            shifted = _map_values(value, lambda v: shift(str(v), context.shift_days))
        except ValueError:
            context.audit.record(keyword, "X")  # a date that does not parse cannot be shifted
            return None
        context.audit.date_shift_applied = True
        return new_element(tag, vr, shifted)
    if vr in TEXT_VRS and vr != "CS":
        cleaned = _map_values(value, lambda v: clean_descriptor(str(v), context.descriptor_words))
        return new_element(tag, vr, cleaned)
    return unchanged


def _map_values(value: Any, fn) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [fn(item) for item in value]
    return fn(value)


def _mark_deidentified(out: Dataset, options: DeidOptions, audit: HeaderAudit) -> None:
    """Add PatientIdentityRemoved, the method and the CID 7050 codes of what was applied."""
    _set_text(out, "PatientIdentityRemoved", "YES")
    _set_text(out, "DeidentificationMethod", METHOD)
    implicit_vr, little_endian = out.original_encoding
    if implicit_vr is None or little_endian is None:
        out.DeidentificationMethodCodeSequence = _code_sequence(options)
    else:
        out[_CODE_SEQUENCE] = _encoded_code_sequence(options, implicit_vr, little_endian)
    _set_text(out, "LongitudinalTemporalInformationModified",
              "MODIFIED" if options.retain_longitudinal_modified_dates else "REMOVED")


_CODE_SEQUENCE = Tag("DeidentificationMethodCodeSequence")


def _code_sequence(options: DeidOptions) -> Sequence:
    """Return the DeidentificationMethodCodeSequence items of the codes `options` apply."""
    return Sequence([_code_item(code) for code in method_codes(options)])


@lru_cache(maxsize=32)
def _encoded_code_sequence(options: DeidOptions, implicit_vr: bool, little_endian: bool) -> RawDataElement:
    """Return the code sequence of `options` encoded once, as pydicom writes it in this encoding.

    It is the same for every file under one set of options; pydicom decodes it again
    when it is read (:func:`add_clean_pixel_code` does).
    """
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit_vr, little_endian
    write_sequence(buffer, DataElement(_CODE_SEQUENCE, "SQ", _code_sequence(options)), ["iso8859"])
    value = buffer.getvalue()
    return RawDataElement(_CODE_SEQUENCE, "SQ", len(value), value, 0, implicit_vr, little_endian)


def _code_item(code: tuple[str, str]) -> Dataset:
    item = Dataset()
    for keyword, value in zip(("CodeValue", "CodingSchemeDesignator", "CodeMeaning"), (code[0], "DCM", code[1])):
        _set_text(item, keyword, value)
    return item


def add_clean_pixel_code(ds: Dataset, audit: HeaderAudit) -> None:
    """Record in `ds` and `audit` that burned-in text was removed from the pixels (113101)."""
    code, meaning = method_codes(DeidOptions(), clean_pixels=True)[1]
    if code not in audit.codes:
        audit.codes.insert(1, code)
    codes = ds.DeidentificationMethodCodeSequence
    if all(item.CodeValue != code for item in codes):
        codes.insert(1, _code_item((code, meaning)))


def _copy_encoding(source: Dataset, out: Dataset) -> None:
    """Give `out` the encoding and file meta of `source`, with its instance UIDs replaced."""
    out.set_original_encoding(*source.original_encoding, source.original_character_set)
    meta = getattr(source, "file_meta", None)
    out.file_meta = FileMetaDataset()
    if meta is not None and "TransferSyntaxUID" in meta:
        out.file_meta.TransferSyntaxUID = meta.TransferSyntaxUID
    if "SOPClassUID" in out:
        out.file_meta.MediaStorageSOPClassUID = peek(out, "SOPClassUID")
    if "SOPInstanceUID" in out:
        out.file_meta.MediaStorageSOPInstanceUID = peek(out, "SOPInstanceUID")
