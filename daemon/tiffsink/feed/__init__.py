"""The feeders: what finds files to ingest and says when each one is complete.

`watch` (the observer thread) and `scan` (scanner threads) put typed `events` on the
service loop's queue; `settle` decides when a file with no close event is complete;
`names` says which paths are ours; `backfill` lists existing folders for `ingest`.
"""
