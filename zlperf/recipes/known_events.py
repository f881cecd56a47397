"""Built-in table of the event ABIs zlperf knows, to validate recipes offline.

When an event exists in the running kernel its tracefs format wins (``zlperf record`` passes
:func:`zlperf.record.tracefs.event_format_here`); this table covers the zone-lock ABIs of kernels other
than this one, so `zlperf recipes validate` works anywhere.
"""

from __future__ import annotations

__all__ = ["KNOWN_EVENTS", "known_format", "ZONE_LOCK_PATCH_EVENTS", "ZONE_LOCK_SERIES_EVENTS", "COMMON_FIELDS"]

from functools import lru_cache
from typing import Dict, Optional

from zlperf.formats import EventFormat, parse_event_format

#: Fields every event has (tracefs filters also accept the pseudo-fields CPU/COMM, see filters.FILTER_PSEUDO_FIELDS).
COMMON_FIELDS = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""

# Each entry: the event's own fields as tracefs prints them (offsets as on x86_64). Offsets are only
# used here to build a FieldFormat; readers always take them from the recorded file.
_FIELDS: Dict[str, str] = {
    # The seed patch "mm/page_alloc: add tracepoints for zone->lock acquisitions" (its 6.12 port is
    # lab/patches/zone-lock-tracepoints-6.12.patch; the lab kernel's format files are in tests/data/formats).
    "kmem:mm_zone_lock_contended": """\
\tfield:int node_id;\toffset:8;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] name;\toffset:12;\tsize:4;\tsigned:0;
\tfield:int count;\toffset:16;\tsize:4;\tsigned:1;
\tfield:unsigned long caller;\toffset:24;\tsize:8;\tsigned:0;
""",
    "kmem:mm_zone_locked": """\
\tfield:int node_id;\toffset:8;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] name;\toffset:12;\tsize:4;\tsigned:0;
\tfield:int count;\toffset:16;\tsize:4;\tsigned:1;
\tfield:bool contended;\toffset:20;\tsize:1;\tsigned:0;
\tfield:unsigned long caller;\toffset:24;\tsize:8;\tsigned:0;
\tfield:u64 wait_ns;\toffset:32;\tsize:8;\tsigned:0;
""",
    "kmem:mm_zone_lock_unlock": """\
\tfield:int node_id;\toffset:8;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] name;\toffset:12;\tsize:4;\tsigned:0;
\tfield:int count;\toffset:16;\tsize:4;\tsigned:1;
\tfield:unsigned long caller;\toffset:24;\tsize:8;\tsigned:0;
""",
    # The rival zone_lock:* series in review in 2026 (its 6.12 port is lab/patches/zone-lock-series-6.12.patch).
    "zone_lock:zone_lock_start_locking": """\
\tfield:struct zone * zone;\toffset:8;\tsize:8;\tsigned:0;
""",
    "zone_lock:zone_lock_acquire_returned": """\
\tfield:struct zone * zone;\toffset:8;\tsize:8;\tsigned:0;
\tfield:bool success;\toffset:16;\tsize:1;\tsigned:0;
""",
    "zone_lock:zone_lock_released": """\
\tfield:struct zone * zone;\toffset:8;\tsize:8;\tsigned:0;
""",
    # Stock kernels since v5.19 (commit 16edd9b51114, "locking: Add lock contention tracepoints").
    "lock:contention_begin": """\
\tfield:void * lock_addr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int flags;\toffset:16;\tsize:4;\tsigned:0;
""",
    "lock:contention_end": """\
\tfield:void * lock_addr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int ret;\toffset:16;\tsize:4;\tsigned:1;
""",
    # Stock page-allocator events, as on the 6.18 CI kernel (fields stable since v5.x; mm_page_alloc_zone_locked
    # gained percpu_refill in v5.13 and the pfn-based layout in v3.x).
    "kmem:mm_page_alloc": """\
\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int order;\toffset:16;\tsize:4;\tsigned:0;
\tfield:unsigned long gfp_flags;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int migratetype;\toffset:32;\tsize:4;\tsigned:1;
""",
    "kmem:mm_page_free": """\
\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int order;\toffset:16;\tsize:4;\tsigned:0;
""",
    "kmem:mm_page_free_batched": """\
\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;
""",
    "kmem:mm_page_alloc_zone_locked": """\
\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int order;\toffset:16;\tsize:4;\tsigned:0;
\tfield:int migratetype;\toffset:20;\tsize:4;\tsigned:1;
\tfield:int percpu_refill;\toffset:24;\tsize:4;\tsigned:1;
""",
    "kmem:mm_page_pcpu_drain": """\
\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int order;\toffset:16;\tsize:4;\tsigned:0;
\tfield:int migratetype;\toffset:20;\tsize:4;\tsigned:1;
""",
}

#: Every event the table describes, ``system:name``.
KNOWN_EVENTS = tuple(sorted(_FIELDS))

#: The seed patch's events: absent on stock kernels (then suggest ``--profile stock``).
ZONE_LOCK_PATCH_EVENTS = ("kmem:mm_zone_lock_contended", "kmem:mm_zone_locked", "kmem:mm_zone_lock_unlock")
#: The rival series' events.
ZONE_LOCK_SERIES_EVENTS = (
    "zone_lock:zone_lock_start_locking",
    "zone_lock:zone_lock_acquire_returned",
    "zone_lock:zone_lock_released",
)


@lru_cache(maxsize=None)
def known_format(event: str) -> Optional[EventFormat]:
    """The built-in :class:`~zlperf.formats.EventFormat` of ``system:name``, or None if not in the table."""
    fields = _FIELDS.get(event)
    if fields is None:
        return None
    system, name = event.split(":", 1)
    text = f"name: {name}\nID: 0\nformat:\n{COMMON_FIELDS}\n{fields}\nprint fmt: \"\"\n"
    return parse_event_format(text, system=system)
