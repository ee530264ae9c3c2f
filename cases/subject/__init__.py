"""A reporter's requests about their own report (PDPA s.30, s.33): erasure and export."""

from cases.subject.erase import (
    CaseHeld,
    Erased,
    SubjectError,
    UnknownReference,
    erase_case,
    erase_subject,
    find_case,
    finish,
)
from cases.subject.export import ExportOptions, Manifest, export_case, export_subject
from cases.subject.requests import (
    approve_erasure,
    may_erase,
    pending_request,
    reject_erasure,
    request_erasure,
)

__all__ = [
    "CaseHeld",
    "Erased",
    "ExportOptions",
    "Manifest",
    "SubjectError",
    "UnknownReference",
    "approve_erasure",
    "erase_case",
    "erase_subject",
    "export_case",
    "export_subject",
    "find_case",
    "finish",
    "may_erase",
    "pending_request",
    "reject_erasure",
    "request_erasure",
]
