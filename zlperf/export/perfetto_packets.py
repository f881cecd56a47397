"""Perfetto TrackEvent packets written as they are made: tracks, interned strings and callstacks, slices, counters.

A thin layer over the ``perfetto`` package's trace builder and protobuf classes (imported by the caller
through :func:`zlperf.extras.require`); packets go to the file in bounded batches, never as one trace.

The packet model follows Perfetto's "Writing TrackEvent protos synthetically" reference
(docs/reference/synthetic-track-event.md in google/perfetto): custom tracks in a tree, slices as
TYPE_SLICE_BEGIN/END pairs that must nest on a track, counters as TYPE_COUNTER events or as extra
counter values on slice events, flows by id, and strings interned once per sequence.
"""

from __future__ import annotations

__all__ = ["PacketWriter", "SEQUENCE_ID"]

from types import ModuleType
from typing import IO, Iterable, Optional, Sequence, Union

#: trusted_packet_sequence_id of every track event (one sequence: interned ids are valid file-wide).
SEQUENCE_ID = 0x7A6C
#: TracePacket.sequence_flags (trace_packet.proto): the first packet clears the incremental state,
#: every packet that uses interned ids needs it.
_CLEARED, _NEEDS = 1, 2
#: Packets written per batch: the file grows as the slices are made; memory stays bounded.
BATCH = 8192
#: Distinct packet templates kept (slice begins/ends that differ only in their timestamp); cleared when full.
TEMPLATES = 1 << 16

ArgValue = Union[str, int]
_BEGIN, _END = 0, 1


class PacketWriter:
    """Writes Perfetto packets to ``fh`` through the package's ``TraceProtoBuilder``, one batch at a time.

    ``pb`` is ``perfetto.protos.perfetto.trace.perfetto_trace_pb2``; ``builder`` the package's
    ``TraceProtoBuilder`` class. Strings (slice names, argument names and values, function names)
    and callstacks are interned on first use, in the packet that first uses them.
    """

    def __init__(self, fh: IO[bytes], pb: ModuleType, builder: type):
        self._fh, self._pb, self._builder_cls = fh, pb, builder
        self._builder = builder()
        self._in_batch = 0
        self.packets = 0
        self._ids: dict[str, dict] = {t: {} for t in (
            "event_names", "debug_annotation_names", "debug_annotation_string_values", "function_names",
            "frames", "callstacks")}
        self._type = pb.TrackEvent
        # Most slices repeat a few (track, name, arguments) combinations: the first is built field by field
        # (interning its strings), later ones are that packet's bytes merged in, then their timestamp set.
        # Hot path: this is what keeps millions of holds affordable in Python.
        self._templates: dict[tuple, bytes] = {}
        first = self._packet(flags=_CLEARED)
        first.first_packet_on_sequence = True
        first.incremental_state_cleared = True

    # -- packets -----------------------------------------------------------------------------------
    def _packet(self, ts: Optional[int] = None, flags: int = _NEEDS):
        if self._in_batch >= BATCH:
            self.flush()
        p = self._builder.add_packet()
        self._in_batch += 1
        self.packets += 1
        if ts is not None:
            p.timestamp = ts
        p.trusted_packet_sequence_id = SEQUENCE_ID
        p.sequence_flags = flags
        return p

    def flush(self) -> None:
        """Write the packets of the current batch to the file."""
        if self._in_batch:
            self._fh.write(self._builder.serialize())
            self._builder = self._builder_cls()
            self._in_batch = 0

    # -- interning ---------------------------------------------------------------------------------
    def _intern(self, packet, table: str, value: str) -> int:
        ids = self._ids[table]
        iid = ids.get(value)
        if iid is None:
            iid = ids[value] = len(ids) + 1
            entry = getattr(packet.interned_data, table).add()
            entry.iid = iid
            if table in ("event_names", "debug_annotation_names"):
                entry.name = value
            else:
                entry.str = value.encode("utf-8", "replace")
        return iid

    def _callstack(self, packet, frames: Sequence[str]) -> int:
        """Interned callstack of function names ``frames`` (outermost first, as Callstack.frame_ids wants)."""
        key = tuple(frames)
        iid = self._ids["callstacks"].get(key)
        if iid is not None:
            return iid
        frame_ids = []
        for name in frames:
            fid = self._ids["frames"].get(name)
            if fid is None:
                fid = self._ids["frames"][name] = len(self._ids["frames"]) + 1
                frame = packet.interned_data.frames.add()
                frame.iid = fid
                frame.function_name_id = self._intern(packet, "function_names", name)
                frame.kind = self._pb.Frame.KIND_KERNEL
            frame_ids.append(fid)
        iid = self._ids["callstacks"][key] = len(self._ids["callstacks"]) + 1
        stack = packet.interned_data.callstacks.add()
        stack.iid = iid
        stack.frame_ids.extend(frame_ids)
        return iid

    # -- templates ---------------------------------------------------------------------------------
    def _from_template(self, key: tuple, ts: int) -> bool:
        blob = self._templates.get(key)
        if blob is None:
            return False
        p = self._packet()
        p.MergeFromString(blob)
        p.timestamp = ts
        return True

    def _remember(self, key: tuple, packet) -> None:
        """Keep ``packet`` without its timestamp and interned data (defined once, already written)."""
        if len(self._templates) >= TEMPLATES:
            self._templates.clear()
        copy = self._pb.TracePacket()
        copy.CopyFrom(packet)
        copy.ClearField("timestamp")
        copy.ClearField("interned_data")
        self._templates[key] = copy.SerializeToString()

    # -- tracks ------------------------------------------------------------------------------------
    def track(self, uuid: int, name: str, parent: Optional[int] = None, rank: Optional[int] = None,
              explicit_order: bool = False, counter: bool = False) -> None:
        """A track descriptor: ``rank`` orders it among its siblings when the parent has ``explicit_order``."""
        p = self._packet(flags=_NEEDS)
        d = p.track_descriptor
        d.uuid = uuid
        d.name = name
        if parent is not None:
            d.parent_uuid = parent
        if rank is not None:
            d.sibling_order_rank = rank
        if explicit_order:
            d.child_ordering = self._pb.TrackDescriptor.EXPLICIT
        if counter:
            d.counter.unit = self._pb.CounterDescriptor.UNIT_COUNT

    # -- events ------------------------------------------------------------------------------------
    def _args(self, packet, event, args: Iterable[tuple[str, ArgValue]]) -> None:
        for key, value in args:
            a = event.debug_annotations.add()
            a.name_iid = self._intern(packet, "debug_annotation_names", key)
            if isinstance(value, str):
                a.string_value_iid = self._intern(packet, "debug_annotation_string_values", value)
            else:
                a.int_value = value

    def begin(self, track: int, ts: int, name: str, args: Iterable[tuple[str, ArgValue]] = (),
              callstack: Optional[Sequence[str]] = None, weight: Optional[float] = None,
              counters: Sequence[tuple[int, int]] = ()) -> None:
        """TYPE_SLICE_BEGIN of a slice named ``name``; ``callstack`` (outermost frame first) with its
        ``weight``; ``counters``: (counter track, value) pairs set at the same time."""
        key = None
        if not callstack:
            key = (_BEGIN, track, name, tuple(args), tuple(counters))
            if self._from_template(key, ts):
                return
        p = self._packet(ts)
        e = p.track_event
        e.type = self._type.TYPE_SLICE_BEGIN
        e.track_uuid = track
        e.name_iid = self._intern(p, "event_names", name)
        self._args(p, e, args)
        if callstack:
            e.callstack_iid = self._callstack(p, callstack)
            if weight is not None:
                e.callstack_weight = weight
        for uuid, value in counters:
            e.extra_counter_track_uuids.append(uuid)
            e.extra_counter_values.append(value)
        if key is not None:
            self._remember(key, p)

    def end(self, track: int, ts: int, flows: Sequence[int] = (), terminating: Sequence[int] = (),
            counters: Sequence[tuple[int, int]] = ()) -> None:
        """TYPE_SLICE_END of the innermost open slice of ``track``; ``flows`` start at this slice,
        ``terminating`` end at it (the trace processor binds flow ids of an end event to the slice it closes)."""
        key = None
        if not flows and not terminating:
            key = (_END, track, tuple(counters))
            if self._from_template(key, ts):
                return
        p = self._packet(ts)
        e = p.track_event
        e.type = self._type.TYPE_SLICE_END
        e.track_uuid = track
        if flows:
            e.flow_ids.extend(flows)
        if terminating:
            e.terminating_flow_ids.extend(terminating)
        for uuid, value in counters:
            e.extra_counter_track_uuids.append(uuid)
            e.extra_counter_values.append(value)
        if key is not None:
            self._remember(key, p)

    def instant(self, track: int, ts: int, name: str, args: Iterable[tuple[str, ArgValue]] = ()) -> None:
        """TYPE_INSTANT event (a point in time, e.g. a contended-lock event without a measured wait)."""
        p = self._packet(ts)
        e = p.track_event
        e.type = self._type.TYPE_INSTANT
        e.track_uuid = track
        e.name_iid = self._intern(p, "event_names", name)
        self._args(p, e, args)

    def counter(self, track: int, ts: int, value: int) -> None:
        """TYPE_COUNTER event: ``track`` takes ``value`` from ``ts`` on."""
        p = self._packet(ts)
        e = p.track_event
        e.type = self._type.TYPE_COUNTER
        e.track_uuid = track
        e.counter_value = value
