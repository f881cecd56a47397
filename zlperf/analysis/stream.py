"""Observations one chunk at a time, for exporters that write every wait and hold (Perfetto, Parquet).

:func:`analyze` reduces a recording to a result; an exporter that needs each event runs this stream
instead (or after it, as a second pass once the result has told which ABI the recording holds). The
observations are those the core aggregates: the same adapter, the same window, the same zone codes.
"""

from __future__ import annotations

__all__ = ["ObservationStream"]

from typing import Iterator, Optional

from zlperf.analysis.abi import ADAPTERS, AbiAdapter, concerns
from zlperf.analysis.core import window
from zlperf.analysis.model import Observations, Zone, ZoneTable
from zlperf.analysis.options import ABIS, AnalysisOptions
from zlperf.errors import ZlperfError
from zlperf.events import TraceReader


class ObservationStream:
    """Iterate over the windowed observations of one ABI of ``reader`` (``abi``: one of ABIS).

    ``zones`` resolves the zone codes of the tables; it grows as new zones appear. The last item comes
    from the adapter's ``finish()`` (acquisitions never released, stock waits identified at the end).
    """

    def __init__(self, reader: TraceReader, abi: str, options: Optional[AnalysisOptions] = None):
        if abi not in ABIS:
            raise ZlperfError(f"unknown ABI {abi!r}: choose one of {', '.join(ABIS)}")
        self.reader = reader
        self.options = options or AnalysisOptions()
        self.zones = ZoneTable()
        cls = next(c for c in ADAPTERS if c.key == abi)
        self.adapter: AbiAdapter = cls(self.zones, reader.info, self.options)

    def __iter__(self) -> Iterator[Observations]:
        for chunk in self.reader.chunks():
            if concerns(self.adapter, chunk):
                yield window(self.adapter.observe(chunk), self.options, self.zones)
        yield window(self.adapter.finish(), self.options, self.zones)

    def zone(self, code: int) -> Optional[Zone]:
        """The zone of a code in the tables (None for -1: rows without a zone, such as gaps)."""
        return self.zones.zones[code] if 0 <= code < len(self.zones.zones) else None
