"""The notification outbox: one row per message, channel and recipient, rendered once, delivered with retries.

texts     the templates per kind, Thai first, and their rendering
outbox    notify() (rows in the caller's transaction), the worker's Outbox sweep, delivery targets
channels  e-mail over SMTP, an office's LINE group, SMS through a gateway
inbox     what staff read in the console: their notifications, unread counts, failed deliveries
alerts    workflow alerts: routed, proposal waiting, approved or rejected, assigned (called by cases.workflow)
"""

from __future__ import annotations

from cases.notifications.channels import DeliveryError
from cases.notifications.inbox import (
    FailedDelivery,
    LiveCounts,
    failed_count,
    failed_deliveries,
    live_counts,
    mark_read,
    my_notifications,
    overseen_office_ids,
    unread_count,
)
from cases.notifications.outbox import (
    CONSOLE_ONLY,
    DeliveryTargets,
    Outbox,
    build_outbox,
    delivery_targets,
    install_targets,
    notify,
)
from cases.notifications.texts import KINDS, render

__all__ = [
    "CONSOLE_ONLY",
    "KINDS",
    "DeliveryError",
    "DeliveryTargets",
    "FailedDelivery",
    "LiveCounts",
    "Outbox",
    "build_outbox",
    "delivery_targets",
    "failed_count",
    "failed_deliveries",
    "install_targets",
    "live_counts",
    "mark_read",
    "my_notifications",
    "notify",
    "overseen_office_ids",
    "render",
    "unread_count",
]
