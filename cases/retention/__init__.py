"""Retention: each kind of personal data kept only as long as its purpose needs (PDPA s.37(3))."""

from cases.retention.hold import LegalHoldError, release_hold, set_hold
from cases.retention.rules import KINDS, PlanRow, plan
from cases.retention.settings import RetentionSettings, RetentionSettingsError, load_retention_settings
from cases.retention.sweep import RecordingDeleter, RetentionSweep

__all__ = [
    "KINDS",
    "LegalHoldError",
    "PlanRow",
    "RecordingDeleter",
    "RetentionSettings",
    "RetentionSettingsError",
    "RetentionSweep",
    "load_retention_settings",
    "plan",
    "release_hold",
    "set_hold",
]
