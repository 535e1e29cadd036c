"""The service around the pipeline: `tiffsink run` (daemon), `tiffsink ingest` (backfill).

`daemon` is the main loop, `intake` turns feeder events into candidates, `disposal` acts
on sources after commit, `signals` handles stop requests, `health`, `metrics` and `http`
report, `sdnotify` talks to systemd and `unit` writes its unit file, `logs` sets up
structlog.
"""
