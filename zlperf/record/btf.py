"""A small reader of raw BTF (/sys/kernel/btf/vmlinux): struct members, offsets and sizes.

Enough to find offsetof(struct zone, lock) and the layout of struct pglist_data on the recording host,
checked against pahole by the tests; every damaged input is one :class:`ZlperfError` line with its offset.
"""

from __future__ import annotations

__all__ = ["BTF_PATH", "Btf", "BtfMember"]

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from zlperf.errors import ZlperfError

#: The running kernel's own type information.
BTF_PATH = Path("/sys/kernel/btf/vmlinux")

# BTF kinds (Documentation/bpf/btf.rst) and the bytes that follow each struct btf_type:
# a fixed part, plus vlen times a per-item size.
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT = range(1, 12)
_FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = range(12, 20)
_TRAILER: Dict[int, Tuple[int, int]] = {
    _INT: (4, 0), _PTR: (0, 0), _ARRAY: (12, 0), _STRUCT: (0, 12), _UNION: (0, 12), _ENUM: (0, 8),
    _FWD: (0, 0), _TYPEDEF: (0, 0), _VOLATILE: (0, 0), _CONST: (0, 0), _RESTRICT: (0, 0), _FUNC: (0, 0),
    _FUNC_PROTO: (0, 8), _VAR: (4, 0), _DATASEC: (0, 12), _FLOAT: (0, 0), _DECL_TAG: (4, 0),
    _TYPE_TAG: (0, 0), _ENUM64: (0, 12),
}
_MODIFIERS = (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG)


@dataclass(frozen=True)
class BtfMember:
    """A struct/union member: its name, type id and offset in bits from the start of the struct."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


class Btf:
    """The types of a raw BTF blob (/sys/kernel/btf/vmlinux): enough to find members and sizes."""

    def __init__(self, data: bytes, path: str = "<btf>"):
        self.path = path
        self.data = data
        if len(data) < 24:
            raise ZlperfError(f"{path}: {len(data)} bytes, too short for a BTF header")
        magic = struct.unpack_from("<H", data, 0)[0]
        if magic == 0xEB9F:
            self.endian = "<"
        elif magic == 0x9FEB:
            self.endian = ">"
        else:
            raise ZlperfError(f"{path}: offset 0x0: magic {magic:#06x} is not BTF's 0xeb9f (is this a raw BTF file?)")
        _m, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(self.endian + "HBBIIIII", data, 0)
        self.types_start = hdr_len + type_off
        self.types_end = self.types_start + type_len
        self.str_start = hdr_len + str_off
        self.str_end = self.str_start + str_len
        if self.types_end > len(data) or self.str_end > len(data):
            raise ZlperfError(f"{path}: header says the type or string section runs past the end of the "
                              f"{len(data)}-byte file (truncated copy?)")
        #: byte offset of each type's struct btf_type, by type id (id 0 is void)
        self.offsets: List[int] = [0]
        self._index()

    @classmethod
    def load(cls, path: Union[str, Path] = BTF_PATH) -> "Btf":
        """Read a raw BTF file; ZlperfError (one line) when it cannot be read or is not BTF."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ZlperfError(f"{path}: cannot read BTF ({exc.strerror}); the kernel needs CONFIG_DEBUG_INFO_BTF")
        return cls(data, str(path))

    def _index(self) -> None:
        unpack = struct.Struct(self.endian + "III").unpack_from
        pos, end = self.types_start, self.types_end
        while pos < end:
            if pos + 12 > end:
                raise ZlperfError(f"{self.path}: offset {pos:#x}: type {len(self.offsets)} cut short by the end of the type section")
            _name, info, _size = unpack(self.data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind not in _TRAILER:
                raise ZlperfError(f"{self.path}: offset {pos:#x}: type {len(self.offsets)} has BTF kind {kind}, "
                                  "unknown to this reader (a newer kernel?)")
            fixed, per_item = _TRAILER[kind]
            if pos + 12 + fixed + per_item * vlen > end:
                raise ZlperfError(f"{self.path}: offset {pos:#x}: type {len(self.offsets)} runs past the end of the "
                                  "type section (truncated or corrupt BTF)")
            self.offsets.append(pos)
            pos += 12 + fixed + per_item * vlen

    # -- raw access
    def string(self, off: int) -> str:
        """The NUL-terminated string at ``off`` in the string section."""
        start = self.str_start + off
        if off < 0 or start >= self.str_end:
            raise ZlperfError(f"{self.path}: string offset {off} is outside the string section")
        stop = self.data.index(b"\0", start, self.str_end)
        return self.data[start:stop].decode("utf-8", "replace")

    def _header(self, type_id: int) -> Tuple[str, int, int, int, int]:
        """(name, kind, vlen, kind_flag, size_or_type) of ``type_id``."""
        if not 0 < type_id < len(self.offsets):
            raise ZlperfError(f"{self.path}: type id {type_id} does not exist (there are {len(self.offsets) - 1})")
        name_off, info, size = struct.unpack_from(self.endian + "III", self.data, self.offsets[type_id])
        return self.string(name_off), (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size

    def kind(self, type_id: int) -> int:
        """The BTF kind number of ``type_id``."""
        return self._header(type_id)[1]

    # -- lookups
    def find(self, name: str, kinds: Tuple[int, ...] = (_STRUCT,)) -> Optional[int]:
        """The first type named ``name`` of one of ``kinds`` (default: struct), or None."""
        unpack = struct.Struct(self.endian + "II").unpack_from
        for tid in range(1, len(self.offsets)):
            name_off, info = unpack(self.data, self.offsets[tid])
            if name_off and (info >> 24) & 0x1F in kinds and self.string(name_off) == name:
                return tid
        return None

    def members(self, type_id: int) -> List[BtfMember]:
        """The members of a struct or union, in order."""
        _name, kind, vlen, kflag, _size = self._header(type_id)
        if kind not in (_STRUCT, _UNION):
            raise ZlperfError(f"{self.path}: type {type_id} is BTF kind {kind}, not a struct or union")
        base = self.offsets[type_id] + 12
        out = []
        for i in range(vlen):
            name_off, tid, off = struct.unpack_from(self.endian + "III", self.data, base + 12 * i)
            # With kind_flag set, the offset word packs the bitfield size above a 24-bit bit offset.
            bits, size = (off & 0xFFFFFF, off >> 24) if kflag else (off, 0)
            out.append(BtfMember(self.string(name_off), tid, bits, size))
        return out

    def resolve(self, type_id: int) -> int:
        """``type_id`` with typedefs, const, volatile, restrict and type tags taken off."""
        seen = 0
        while type_id and self.kind(type_id) in _MODIFIERS:
            type_id = self._header(type_id)[4]
            seen += 1
            if seen > 64:
                raise ZlperfError(f"{self.path}: type {type_id}: a loop of typedefs/modifiers")
        return type_id

    def size(self, type_id: int) -> int:
        """sizeof the type, in bytes."""
        type_id = self.resolve(type_id)
        _name, kind, _vlen, _kflag, size = self._header(type_id)
        if kind in (_INT, _STRUCT, _UNION, _ENUM, _ENUM64, _DATASEC, _FLOAT):
            return size
        if kind == _PTR:
            return 8 if self.size_of_long() == 8 else 4
        if kind == _ARRAY:
            elem, _index, nelems = struct.unpack_from(self.endian + "III", self.data, self.offsets[type_id] + 12)
            return self.size(elem) * nelems
        raise ZlperfError(f"{self.path}: type {type_id} (BTF kind {kind}) has no size")

    def size_of_long(self) -> int:
        """sizeof(long) on the kernel that made this BTF (8 unless a 32-bit kernel)."""
        tid = self.find("long int", (_INT,))
        return self._header(tid)[4] if tid else 8

    def array_len(self, type_id: int) -> int:
        """Number of elements of an array type."""
        type_id = self.resolve(type_id)
        if self.kind(type_id) != _ARRAY:
            raise ZlperfError(f"{self.path}: type {type_id} is not an array")
        return struct.unpack_from(self.endian + "III", self.data, self.offsets[type_id] + 12)[2]

    def member(self, type_id: int, name: str) -> Optional[BtfMember]:
        """Member ``name`` of a struct/union, looking inside anonymous members; its offset is from ``type_id``."""
        for m in self.members(type_id):
            if m.name == name:
                return m
            if not m.name:
                inner = self.resolve(m.type_id)
                if self.kind(inner) in (_STRUCT, _UNION):
                    found = self.member(inner, name)
                    if found is not None:
                        return BtfMember(found.name, found.type_id, m.bit_offset + found.bit_offset, found.bitfield_size)
        return None
