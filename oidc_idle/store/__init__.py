"""Session stores: the interface and its backends."""

from .base import (
    ACTIVE,
    TERMINATED,
    TERMINATING,
    AppClock,
    AuditEntry,
    ClientRecord,
    NewNotification,
    Notification,
    SessionRecord,
    SessionStore,
)
from .sqlite import SQLiteStore

__all__ = [
    "ACTIVE",
    "TERMINATED",
    "TERMINATING",
    "AppClock",
    "AuditEntry",
    "ClientRecord",
    "NewNotification",
    "Notification",
    "SQLiteStore",
    "SessionRecord",
    "SessionStore",
]
