"""zlperf: record and analyse page-allocator zone->lock contention.

Readers turn trace.dat / perf.data into columnar event batches (:mod:`zlperf.events`);
one analysis core (:mod:`zlperf.analysis`) turns batches into the report every front end prints.
"""

__version__ = "0.1.0"
