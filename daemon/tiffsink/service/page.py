"""The dashboard: one self-contained HTML page (no CDN, fonts or external scripts, since
acquisition machines are often offline) that polls /status every two seconds."""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tiffsink</title>
<style>
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2430; --dim:#6b7585; --ok:#1f8a4c;
        --warn:#c77700; --bad:#c62828; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--ink); }
header { display:flex; align-items:center; gap:12px; padding:12px 16px; background:#1d2430;
         color:#fff; flex-wrap:wrap; }
header h1 { font-size:18px; margin:0; }
#where { margin-left:auto; color:#c9d1dc; font-size:13px; word-break:break-all; }
#health { padding:3px 10px; border-radius:12px; font-weight:600; background:var(--ok); }
#health.bad { background:var(--bad); }
main { display:grid; gap:12px; padding:12px;
       grid-template-columns:repeat(auto-fit,minmax(260px,1fr)); }
.card { background:var(--card); border-radius:8px; padding:12px 14px; box-shadow:0 1px 2px #0001; }
.card h2 { font-size:13px; text-transform:uppercase; letter-spacing:.05em;
           color:var(--dim); margin:0 0 6px; }
.big { font-size:32px; font-weight:700; }
.wide { grid-column:1/-1; }
#bar { height:10px; background:#e3e6ea; border-radius:5px; overflow:hidden; margin-top:6px; }
#bar div { height:100%; background:var(--ok); }
#bar.low div { background:var(--warn); }
.low-text { color:var(--warn); font-weight:600; }
table { width:100%; border-collapse:collapse; font-size:13px; }
td, th { text-align:left; padding:3px 6px; border-bottom:1px solid #eee; vertical-align:top; }
td.detail { color:var(--dim); word-break:break-word; }
#thumbs { display:grid; gap:8px; grid-template-columns:repeat(auto-fill,minmax(150px,1fr)); }
figure { margin:0; background:#000; border-radius:6px; overflow:hidden; }
figure img { width:100%; display:block; aspect-ratio:1; object-fit:contain; }
figcaption { color:#eee; font-size:11px; padding:3px 5px; white-space:nowrap;
             overflow:hidden; text-overflow:ellipsis; }
svg { width:100%; height:150px; font:11px system-ui, sans-serif; fill:var(--dim); }
</style></head>
<body>
<header><h1>tiffsink</h1><span id="health">…</span><span id="problem"></span>
  <span id="where"></span></header>
<main>
  <section class="card"><h2>Rows</h2><div class="big" id="rows">…</div>
    <div id="rate"></div></section>
  <section class="card"><h2>Pending files</h2><div class="big" id="pending">…</div></section>
  <section class="card"><h2>Disk free</h2><div class="big" id="disk">…</div>
    <div id="bar"><div></div></div></section>
  <section class="card" id="publish-card" hidden><h2>Published</h2>
    <div class="big" id="published">…</div><div id="publish-lag"></div></section>
  <section class="card wide"><h2>Rows per minute, last hour</h2>
    <svg id="chart" viewBox="0 0 600 150" role="img"
         aria-label="rows committed per minute over the last hour"></svg></section>
  <section class="card wide"><h2>Latest rows</h2><div id="thumbs"></div></section>
  <section class="card wide"><h2>Failures</h2><div id="by-reason"></div>
    <table><thead><tr><th>file</th><th>reason</th><th>detail</th></tr></thead>
    <tbody id="failures"></tbody></table></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function gb(b) { return (b / 1e9).toFixed(1) + " GB"; }
function text(el, s) { el.textContent = s; }
const X0 = 56, X1 = 592, Y0 = 10, Y1 = 116;  // the plot area inside the 600x150 chart
function chart(points) {
  // One bar per minute of the last hour, from the commit times in the index.
  const svg = $("chart"), now = Math.floor(Date.now() / 60000) * 60;
  const per = new Map(points.map(([m, n]) => [m, n]));
  const vals = []; for (let i = 59; i >= 0; i--) vals.push(per.get(now - i * 60) || 0);
  const max = Math.max(1, ...vals), w = (X1 - X0) / 60;
  const y = (v) => (Y1 - v * (Y1 - Y0) / max).toFixed(1);
  let out = vals.map((v, i) => v ? '<rect fill="#1f6feb" x="' + (X0 + i * w).toFixed(1) +
    '" y="' + y(v) + '" width="' + (w * 0.85).toFixed(1) + '" height="' +
    (Y1 - y(v)).toFixed(1) + '"/>' : "").join("");
  out += '<path d="M' + X0 + ' ' + Y0 + ' V' + Y1 + ' H' + X1 + '" stroke="#888" fill="none"/>';
  out += '<text x="' + (X0 - 6) + '" y="' + (Y0 + 8) + '" text-anchor="end">' + max + '</text>';
  out += '<text x="' + (X0 - 6) + '" y="' + Y1 + '" text-anchor="end">0</text>';
  for (const ago of [60, 45, 30, 15, 0]) {
    const x = X0 + (60 - ago) * w;
    out += '<text x="' + x.toFixed(1) + '" y="' + (Y1 + 14) + '" text-anchor="middle">' +
           (ago ? "-" + ago + " min" : "now") + '</text>';
  }
  out += '<text x="' + ((X0 + X1) / 2) + '" y="146" text-anchor="middle">time</text>';
  out += '<text transform="translate(14 ' + ((Y0 + Y1) / 2) + ') rotate(-90)" ' +
         'text-anchor="middle">rows per minute</text>';
  svg.innerHTML = out;
}
function ago(s) {
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
  return h ? h + " h " + m + " min" : m + " min";
}
function thumbs(recent) {
  const box = $("thumbs"), want = recent.map((r) => String(r.row));
  const have = Array.from(box.children).map((f) => f.dataset.row);
  if (want.join() === have.join()) return;
  box.replaceChildren(...recent.map((r) => {
    const fig = document.createElement("figure"); fig.dataset.row = r.row;
    const img = document.createElement("img");
    img.src = "/rows/" + r.row + ".png?w=256"; img.alt = "row " + r.row; img.loading = "eager";
    const cap = document.createElement("figcaption");
    text(cap, "#" + r.row + " " + r.source + (r.page ? " p" + r.page : ""));
    fig.append(img, cap); return fig;
  }));
}
function failures(st) {
  const reasons = Object.entries(st.failed || {}).map(([r, n]) => r + ": " + n);
  text($("by-reason"), reasons.length ? reasons.join(", ") : "none");
  $("failures").replaceChildren(...(st.recent_failures || []).map((f) => {
    const tr = document.createElement("tr");
    for (const [k, v] of [["", f.file], ["", f.reason], ["detail", f.detail]]) {
      const td = document.createElement("td"); if (k) td.className = k; text(td, v); tr.append(td);
    }
    return tr;
  }));
}
async function poll() {
  try {
    const st = await (await fetch("/status", {cache: "no-store"})).json();
    text($("rows"), st.rows.toLocaleString());
    text($("where"), (st.dataset || "") + " on " + st.host + ", up " + ago(st.uptime_s));
    document.title = "tiffsink: " + (st.dataset || "") + " on " + st.host;
    text($("rate"), st.rows_per_s_1m.toFixed(1) + " rows/s (last minute)");
    text($("pending"), st.pending);
    const h = $("health"); h.className = st.healthy ? "" : "bad";
    text(h, st.healthy ? "healthy" : "attention"); text($("problem"), st.problem || "");
    if (st.disk) {
      text($("disk"), gb(st.disk.free));
      $("bar").className = st.disk.low ? "low" : "";
      $("bar").firstElementChild.style.width = (100 * st.disk.free / st.disk.total) + "%";
      $("disk").className = "big" + (st.disk.low ? " low-text" : "");
    }
    const pub = st.publish;
    $("publish-card").hidden = !pub;
    if (pub) {
      text($("published"), (pub.remote_rows ?? 0).toLocaleString());
      text($("publish-lag"), (pub.lag_rows ?? 0) + " rows, " + ago(pub.lag_s ?? 0) +
        " behind, to " + pub.target + (pub.last_error ? "; last error: " + pub.last_error : ""));
    }
    chart(st.rows_per_minute || []); thumbs(st.recent || []); failures(st);
  } catch (e) {
    const h = $("health"); h.className = "bad"; text(h, "no connection");
  }
}
poll(); setInterval(poll, 2000);
</script></body></html>
"""
