"""`tiffsink status` as text for a person (the numbers come from dataset.status)."""

from __future__ import annotations

from typing import Any


def render(st: dict[str, Any]) -> str:
    def ago(s: float | None) -> str:
        return "never" if s is None else f"{s:.0f} s ago"

    img = st["image"] or {}
    pid = st["writer_pid"]
    lines = [
        f"dataset:      {st['dataset']} ({st['format']})",
        f"rows:         {st['rows']} from {st['files']} files ({st['bytes'] / 1e9:.2f} GB)",
        f"last commit:  {ago(st['last_commit_age_s'])}",
        f"rate:         {st['rows_per_s_last_minute']:.2f} rows/s (last minute), "
        f"{st['rows_per_s_last_hour']:.2f} rows/s (last hour)",
        f"failures:     {st['failures_total']}"
        + "".join(f"\n  {r}: {n}" for r, n in sorted(st["failures"].items())),
        "writer:       " + (f"daemon running, PID {pid}" if pid else "none (not running)"),
        f"image spec:   {img.get('height')}x{img.get('width')}x{img.get('channels')} "
        f"{img.get('dtype')}, {img.get('interpolation')}, fit={img.get('fit')}, "
        f"pages={img.get('pages')}, intensity={img.get('intensity')}",
    ]
    pub = st.get("publish")
    if pub:
        state = "publishing" if pub.get("running") else "stopped"
        err = f", last error: {pub['last_error']}" if pub.get("last_error") else ""
        lines.append(
            f"published:    {pub.get('remote_rows')} rows to {pub.get('url')} ({state}; "
            f"{pub.get('lag_rows')} rows, {pub.get('lag_s', 0):.0f} s behind{err})"
        )
    if st.get("label"):
        counts = st["labels"]
        lines.append(f"label:        {st['label']} ({len(counts)} values)")
        lines += [f"  {v}: {n}" for v, n in list(counts.items())[:50]]
    return "\n".join(lines)
