"""Which kernel stack frames mark a lock:contention_begin wait as a wait on zone->lock.

Stock kernels (since v5.19) have only lock:contention_begin/end, which fire for every
contended lock. A wait is on zone->lock when the first frame *outside the locking code*
of its stack is one of the page allocator's zone-lock paths below. Frames differ by kernel
version and by what the compiler inlined, so the table lists every function that can be that
frame; a recipe's ``zone_lock_frames`` (or ``zlperf report --zone-lock-frames``) replaces it.

Once a lock address is known to be a zone lock this way, every wait on that address is
attributed to it, whatever its stack (compaction and page isolation take zone->lock too).
"""

from __future__ import annotations

__all__ = ["ZONE_LOCK_FRAMES", "LOCKING_FRAME_PREFIXES", "is_locking_frame", "first_outside_frame"]

from typing import Callable, Optional, Sequence

#: function -> why it marks a zone->lock wait (the first frame outside the locking code).
ZONE_LOCK_FRAMES: dict[str, str] = {
    # allocation: filling the per-CPU lists or taking pages straight from the buddy lists
    "rmqueue_bulk": "fills a per-CPU list from the buddy lists under zone->lock",
    "rmqueue_buddy": "high-order / no-pcp allocation under zone->lock (since v6.0)",
    "__rmqueue_pcplist": "rmqueue_bulk inlined here (seen on 6.12 and 6.18)",
    "rmqueue_pcplist": "rmqueue_bulk inlined here (older kernels)",
    "rmqueue": "rmqueue_buddy inlined here (before v6.0 it was part of rmqueue)",
    "get_page_from_freelist": "rmqueue_buddy / rmqueue_bulk inlined here (seen on 6.18)",
    "__alloc_pages_bulk": "bulk allocator refilling from the buddy lists",
    "alloc_pages_bulk_noprof": "bulk allocator (v6.10+ name)",
    "reserve_highatomic_pageblock": "takes zone->lock to reserve a highatomic pageblock",
    "unreserve_highatomic_pageblock": "takes zone->lock to give highatomic pageblocks back",
    # freeing: draining the per-CPU lists or freeing straight to the buddy lists
    "free_pcppages_bulk": "drains a per-CPU list back to the buddy lists under zone->lock",
    "free_one_page": "frees a page straight to the buddy lists under zone->lock",
    "__free_pages_ok": "free_one_page inlined here",
    "free_unref_page_commit": "free_pcppages_bulk inlined here (v5.19..v6.14)",
    "free_frozen_page_commit": "free_pcppages_bulk inlined here (v6.15+ name)",
    "free_unref_page": "free_one_page / free_pcppages_bulk inlined here",
    "free_unref_folios": "free_one_page / free_pcppages_bulk inlined here (v6.9+)",
    "free_unref_page_list": "free_pcppages_bulk inlined here (before v6.9)",
    "drain_zone_pages": "free_pcppages_bulk inlined here",
    "drain_pages_zone": "free_pcppages_bulk inlined here",
    "decay_pcp_high": "free_pcppages_bulk inlined here (v6.7+)",
}

#: Frames of the tracing and locking machinery itself, skipped to find the lock's caller.
LOCKING_FRAME_PREFIXES: tuple[str, ...] = (
    "trace_event_raw_event_", "perf_trace_", "__traceiter_", "perf_tp_event", "trace_contention_",
    "__bpf_trace_", "bpf_trace_run",
    "_raw_spin_lock", "_raw_read_lock", "_raw_write_lock", "do_raw_spin_lock", "do_raw_read_lock",
    "do_raw_write_lock", "queued_spin_lock", "native_queued_spin_lock", "__pv_queued_spin_lock",
    "pv_queued_spin_lock", "queued_read_lock", "queued_write_lock", "__queued_",
    "spin_lock", "_spin_lock", "rt_spin_lock", "rtlock_",
    "rwsem_down_", "down_read", "down_write", "__down", "down_killable", "down_interruptible",
    "down_timeout", "down_trylock",
    "mutex_lock", "__mutex_lock", "mutex_spin_on_owner", "osq_lock",
    "rt_mutex", "__rt_mutex", "percpu_down_", "__percpu_down_", "percpu_rwsem_",
    "lock_acquire", "__lock_acquire",
    # wrappers that only take a lock for their caller (the lruvec lock, seen on 6.18)
    "folio_lruvec_lock", "lock_page_lruvec", "folio_lock_lruvec",
)


def is_locking_frame(name: str) -> bool:
    """True for frames of the tracing/locking code (skipped when looking for the caller)."""
    return name.startswith(LOCKING_FRAME_PREFIXES) or name.endswith("_slowpath")


def first_outside_frame(
    frames: Sequence[int], function_of: Callable[[int], Optional[str]]
) -> tuple[Optional[int], Optional[str]]:
    """(address, function) of the innermost frame that is not locking code; (None, None) if none."""
    for addr in frames:
        if not addr:
            break
        name = function_of(int(addr))
        if name is None:
            return int(addr), None
        if not is_locking_frame(name):
            return int(addr), name
    return None, None
