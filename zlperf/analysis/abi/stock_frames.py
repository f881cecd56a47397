"""Which kernel stack frames mark a lock:contention_begin wait as a wait on zone->lock.

Stock kernels (since v5.19) have only lock:contention_begin/end, which fire for every
contended lock. A wait is on zone->lock when the first frame *outside the locking code*
of its stack is one of the page allocator's zone-lock paths below. Frames differ by kernel
version and by what the compiler inlined, so the table lists every function that can be that
frame; a recipe's ``zone_lock_frames`` (used by ``zlperf report --recipe/--profile``) replaces it.

Once a lock address is known to be a zone lock this way, every wait on that address is
attributed to it, whatever its stack (compaction and page isolation take zone->lock too).
"""

from __future__ import annotations

__all__ = ["ZONE_LOCK_FRAMES"]

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
