"""Where HUD records are kept: the contract in `base`, one backend a module (`orm`,
`clickhouse`), chosen by `HUD_STORE`, as Django's session backends are laid out."""

from hud.storage.base import (
    COMPLETED,
    KEY_FIELDS,
    STORED_JOB_FIELDS,
    HudRecord,
    RecordExists,
    RecordKey,
    RecordStore,
    StoredJob,
    StoreUnavailable,
    get_store,
    is_late,
    may_change,
    merged,
    workflow_fields,
)

__all__ = [
    "COMPLETED",
    "KEY_FIELDS",
    "STORED_JOB_FIELDS",
    "HudRecord",
    "RecordExists",
    "RecordKey",
    "RecordStore",
    "StoreUnavailable",
    "StoredJob",
    "get_store",
    "is_late",
    "may_change",
    "merged",
    "workflow_fields",
]
