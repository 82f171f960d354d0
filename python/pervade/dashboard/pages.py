"""HTML pages of the dashboard, with charts drawn as inline SVG on the server (no script, no CDN).

Every string that comes from the database goes through `esc` (html.escape) before it is
written; numbers are formatted by Python. Pages of a running workflow reload themselves
every REFRESH_SECONDS.
"""

from __future__ import annotations

import datetime
import html
import urllib.parse

from .db import MIB, STATES, Monitoring, RunStats

REFRESH_SECONDS = 2
GANTT_TRIES = 400          # the task stream shows the latest tries only: a sample on big runs
DAG_LIMIT = 300            # the dependency graph is drawn for runs up to this many tasks
DEFAULT_THRESHOLD_MB = 256

COLORS = {"pending": "#b0b7c3", "launched": "#f2c14e", "running": "#3c8dde", "exec_done": "#3aa655",
          "memo_done": "#7fc97f", "failed": "#d64545", "dep_fail": "#e89a3c"}
APP_COLORS = ("#3c8dde", "#3aa655", "#9467bd", "#e89a3c", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:8px 16px}header a{color:#fff;margin-right:14px;text-decoration:none}
main{padding:12px 16px}h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;font-size:13px}td,th{border:1px solid #dde;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.flag{color:#d64545;font-weight:bold}
pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:900px}svg{background:#fff;border:1px solid #dde}
.muted{color:#777;font-size:12px}.live{color:#3aa655}.done{color:#555}
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def quote(value) -> str:
    return urllib.parse.quote(str(value), safe="")


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 120:
        return f"{s:.2f} s"
    return str(datetime.timedelta(seconds=round(s)))


def fmt_bytes(b: float | None) -> str:
    if not b:
        return "-"
    return f"{b / MIB:.1f} MiB" if b < 1024 * MIB else f"{b / 1024 / MIB:.2f} GiB"


def layout(title: str, body: str, run_id: str | None = None, live: bool = False) -> str:
    nav = '<a href="/">Workflows</a>'
    if run_id is not None:
        base = f"/run/{quote(run_id)}"
        nav += "".join(f'<a href="{base}/{path}">{name}</a>' for path, name in (
            ("", "Overview"), ("tasks", "Task stream"), ("failures", "Failures"), ("resources", "Memory &amp; CPU"),
            ("pools", "Pools, blocks, nodes"), ("dag", "Dependencies")))
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if live else ""
    state = f'<span class="live">live, refreshing every {REFRESH_SECONDS} s</span>' if live else ""
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8">{refresh}<title>{esc(title)} - pervade</title>'
            f'<style>{STYLE}</style></head><body><header><b>pervade</b> &nbsp; {nav}</header>'
            f'<main><h1>{esc(title)} {state}</h1>{body}</main></body></html>')


def with_note(page: str, note: str) -> str:
    """The page with a note on top, reloading itself (while the database is still being read)."""
    if "http-equiv" not in page:
        page = page.replace("<head>", f'<head><meta http-equiv="refresh" content="{REFRESH_SECONDS}">', 1)
    return page.replace("<main>", f'<main><p class="live" id="note">{esc(note)}</p>', 1)


def is_live(workflow: dict) -> bool:
    return workflow["time_completed"] is None


def counts_table(counts: dict) -> str:
    head = "".join(f'<th><span style="color:{COLORS[s]}">&#9632;</span> {s}</th>' for s in STATES)
    cells = "".join(f'<td class="n" id="count-{s}">{counts[s]}</td>' for s in STATES)
    return (f'<table><tr><th>tasks</th>{head}</tr><tr><td class="n" id="count-tasks">{sum(counts.values())}</td>'
            f"{cells}</tr></table>")


def state_bar(counts: dict, width: int = 600) -> str:
    total = sum(counts.values()) or 1
    x, parts = 0.0, []
    for s in STATES:
        w = width * counts[s] / total
        if w > 0:
            parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="14" fill="{COLORS[s]}"><title>{s}: {counts[s]}</title></rect>')
        x += w
    return f'<svg width="{width}" height="14">{"".join(parts)}</svg>'


def throughput_chart(stats: RunStats, began: float | None, width: int = 600, height: int = 120, bins: int = 100) -> str:
    """Tasks finished per second over the run, rebinned to at most `bins` bars."""
    per_second = stats.finished_per_second
    if not per_second:
        return '<p class="muted">no task finished yet</p>'
    start = int(began) if began is not None else min(per_second)
    end = max(per_second) + 1
    step = max(1, -(-(end - start) // bins))
    totals = [0] * (-(-(end - start) // step))
    for second, n in per_second.items():
        if second >= start:
            totals[(second - start) // step] += n
    peak = max(totals) or 1
    bar = width / len(totals)
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 20 - (height - 30) * n / peak:.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{(height - 30) * n / peak:.1f}" fill="#3c8dde"><title>{i * step}-{(i + 1) * step} s: {n / step:.1f} tasks/s</title></rect>'
        for i, n in enumerate(totals) if n)
    axis = (f'<text x="0" y="{height - 5}" font-size="10">0 s</text>'
            f'<text x="{width - 40}" y="{height - 5}" font-size="10">{end - start} s</text>'
            f'<text x="4" y="10" font-size="10">peak {peak / step:.0f} tasks/s</text>')
    return f'<svg width="{width}" height="{height}" class="throughput">{rects}{axis}</svg>'


def rate(stats: RunStats, workflow: dict) -> float:
    """Mean finish rate in tasks/s since the workflow began."""
    finished = sum(stats.final.values())
    if not finished or workflow["began"] is None:
        return 0.0
    end = workflow["completed"] or max(stats.finished_per_second) + 1
    return finished / max(end - workflow["began"], 1e-3)


def index_page(db: Monitoring) -> str:
    workflows = db.workflows()
    if not workflows:
        return layout("Workflows", '<p class="muted">no workflow recorded yet</p>', live=True)
    rows = []
    for w in workflows:
        stats = db.run(w["run_id"])
        counts = stats.counts()
        state = '<span class="live">running</span>' if is_live(w) else '<span class="done">completed</span>'
        rows.append(f'<tr><td><a href="/run/{quote(w["run_id"])}/">{esc(w["workflow_name"] or w["run_id"])}</a>'
                    f'<div class="muted">{esc(w["run_id"])}</div></td><td>{state}</td><td>{esc(w["time_began"])}</td>'
                    f'<td>{esc(w["user"])}@{esc(w["host"])}</td><td class="n">{stats.tasks}</td>'
                    + "".join(f'<td class="n">{counts[s]}</td>' for s in STATES)
                    + f'<td class="n">{rate(stats, w):.1f}</td><td>{throughput_chart(stats, w["began"], 240, 40, 60)}</td></tr>')
    head = "".join(f"<th>{s}</th>" for s in STATES)
    body = (f"<table><tr><th>workflow</th><th>state</th><th>began</th><th>where</th><th>tasks</th>{head}"
            f"<th>tasks/s</th><th>throughput</th></tr>{''.join(rows)}</table>")
    return layout("Workflows", body, live=any(is_live(w) for w in workflows))


def app_table(stats: RunStats) -> str:
    rows = []
    for app, a in sorted(stats.apps.items()):
        failed = a.states["failed"] + a.states["dep_fail"]
        rows.append(f'<tr><td>{esc(app)}</td><td class="n">{a.tasks}</td><td class="n">{a.finished}</td>'
                    f'<td class="n">{a.states["exec_done"] + a.states["memo_done"]}</td>'
                    f'<td class="n{" flag" if failed else ""}">{failed}</td><td class="n">{a.retries}</td>'
                    f'<td class="n">{fmt_seconds(a.duration_mean)}</td><td class="n">{fmt_seconds(a.duration_max)}</td>'
                    f'<td class="n">{fmt_bytes(a.memory_max)}</td></tr>')
    return ("<table id='apps'><tr><th>app</th><th>tasks</th><th>finished</th><th>succeeded</th><th>failed</th><th>retries</th>"
            "<th>mean run time</th><th>max run time</th><th>peak memory</th></tr>" + "".join(rows) + "</table>")


def overview_page(db: Monitoring, w: dict) -> str:
    stats = db.run(w["run_id"])
    counts = stats.counts()
    end = "running" if is_live(w) else f"completed {esc(w['time_completed'])}"
    body = (f'<p>run <code>{esc(w["run_id"])}</code> &middot; began {esc(w["time_began"])} &middot; {end} &middot; '
            f'{esc(w["user"])}@{esc(w["host"])} &middot; <code>{esc(w["rundir"])}</code></p>'
            f"<h2>Tasks per state</h2>{counts_table(counts)}<p>{state_bar(counts)}</p>"
            f'<p>mean rate <b id="rate">{rate(stats, w):.1f}</b> tasks/s</p>'
            f"<h2>Throughput (tasks finished per second)</h2>{throughput_chart(stats, w['began'])}"
            f"<h2>Apps</h2>{app_table(stats)}")
    return layout(w["workflow_name"] or w["run_id"], body, w["run_id"], is_live(w))


def worker_lanes(tries: list[dict]) -> dict:
    """Packs tries onto lanes per executor, host and block so that tries on one lane never overlap:
    one lane ~ one worker."""
    lanes: dict[str, list[float]] = {}     # group -> end time of the last try on each lane
    placed = {}
    for t in sorted(tries, key=lambda t: t["running"] or t["launched"] or 0):
        start = t["running"] or t["launched"]
        if start is None:
            continue
        group = " ".join(str(part) for part in (t["executor"], t["host"] or "?", t["block"] and f"block {t['block']}") if part)
        ends = lanes.setdefault(group, [])
        lane = next((i for i, end in enumerate(ends) if end <= start), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = t["returned"] or float("inf")
        placed[id(t)] = (group, lane)
    return placed


def gantt_page(db: Monitoring, w: dict) -> str:
    tries = db.recent_tries(w["run_id"], GANTT_TRIES)
    placed = worker_lanes(tries)
    if not placed:
        return layout("Task stream", '<p class="muted">no task launched yet</p>', w["run_id"], is_live(w))
    starts = [t["running"] or t["launched"] for t in tries if id(t) in placed]
    t0 = min(starts)
    t1 = max([t["returned"] for t in tries if t["returned"]] + starts) + 1e-3
    hosts = sorted({host for host, _ in placed.values()})
    lane_count = {h: 1 + max(lane for host, lane in placed.values() if host == h) for h in hosts}
    row, label_w, width, y = 10, 170, 960, {}
    offset = 0
    for h in hosts:
        y[h] = offset
        offset += lane_count[h] * row + 6
    apps = sorted({t["app"] or "?" for t in tries})
    color = {a: APP_COLORS[i % len(APP_COLORS)] for i, a in enumerate(apps)}
    scale = (width - label_w) / (t1 - t0)
    parts = [f'<text x="2" y="{y[h] + 10}" font-size="11">{esc(h)} ({lane_count[h]})</text>' for h in hosts]
    for t in tries:
        if id(t) not in placed:
            continue
        host, lane = placed[id(t)]
        start = t["running"] or t["launched"]
        end = t["returned"] or t1
        fill = "#d64545" if t["error"] else color[t["app"] or "?"]
        open_end = "" if t["returned"] else ' fill-opacity="0.5"'
        parts.append(f'<rect x="{label_w + (start - t0) * scale:.1f}" y="{y[host] + lane * row}" '
                     f'width="{max((end - start) * scale, 1):.1f}" height="{row - 2}" fill="{fill}"{open_end}>'
                     f'<title>task {t["task_id"]} try {t["try_id"]} {esc(t["app"])} on {esc(host)}: '
                     f'{fmt_seconds(end - start)}</title></rect>')
    legend = " ".join(f'<span style="color:{color[a]}">&#9632;</span> {esc(a)}' for a in apps)
    body = (f'<p class="muted">the latest {len(placed)} tries, one lane per worker slot of each executor, host and block, '
            f'{fmt_seconds(t1 - t0)} shown; red: failed try; faded: still running</p><p>{legend} '
            f'<span style="color:#d64545">&#9632;</span> failed</p>'
            f'<svg width="{width}" height="{offset + 4}" id="gantt">{"".join(parts)}</svg>')
    return layout("Task stream", body, w["run_id"], is_live(w))


def failures_page(db: Monitoring, w: dict) -> str:
    stats = db.run(w["run_id"])
    failures = db.failures(w["run_id"])
    items = []
    for f in failures:
        tries = "".join(f'<tr><td class="n">{t["try_id"]}</td><td>{esc(t["host"])}</td><td><pre>{esc(t["error"])}</pre></td></tr>'
                        for t in f["tries"] if t["error"])
        items.append(f'<tr><td class="n"><a href="/run/{quote(w["run_id"])}/task/{f["task_id"]}">{f["task_id"]}</a></td>'
                     f'<td>{esc(f["app"])}</td><td><table>{tries}</table></td>'
                     f'<td>{esc(f["stdout"])}<br>{esc(f["stderr"])}</td><td>{esc(f["depends"])}</td></tr>')
    body = (f'<p><b id="failed-count">{stats.failed_total}</b> tasks failed'
            f'{f", the latest {len(failures)} shown" if len(failures) < stats.failed_total else ""}.</p>'
            "<table id='failures'><tr><th>task</th><th>app</th><th>tries: host, exception</th><th>stdout / stderr</th>"
            f"<th>depends on</th></tr>{''.join(items)}</table>")
    return layout("Failures", body, w["run_id"], is_live(w))


def resources_page(db: Monitoring, w: dict, threshold_mib: int) -> str:
    stats = db.run(w["run_id"])
    threshold = threshold_mib * MIB
    rows = []
    for app, a in sorted(stats.apps.items()):
        flag = " flag" if a.memory_max >= threshold else ""
        mean = a.memory_sum / a.samples if a.samples else 0
        rows.append(f'<tr><td>{esc(app)}</td><td class="n">{a.samples}</td><td class="n">{fmt_bytes(mean)}</td>'
                    f'<td class="n{flag}">{fmt_bytes(a.memory_max)}</td><td class="n">{fmt_seconds(a.cpu_max)}</td></tr>')
    heaviest = sorted(stats.heaviest.items(), key=lambda item: -item[1][0])
    task_rows = "".join(f'<tr><td class="n"><a href="/run/{quote(w["run_id"])}/task/{task_id}">{task_id}</a></td>'
                        f'<td>{esc(app)}</td><td class="n{" flag" if peak >= threshold else ""}">{fmt_bytes(peak)}</td></tr>'
                        for task_id, (peak, app) in heaviest)
    body = (f'<form method="get">flag tasks at or over <input name="threshold_mb" value="{threshold_mib}" size="6"> MiB '
            '<button>apply</button></form>'
            "<h2>Per app</h2><table id='app-resources'><tr><th>app</th><th>samples</th><th>mean memory (RSS)</th>"
            f"<th>peak memory</th><th>peak CPU time</th></tr>{''.join(rows)}</table>"
            f'<h2><span id="heavy-count">{stats.tasks_over(threshold_mib)}</span> tasks reached {threshold_mib} MiB</h2>'
            f"<h2>The {len(heaviest)} tasks with the highest memory peak</h2>"
            f"<table id='heavy'><tr><th>task</th><th>app</th><th>peak memory</th></tr>{task_rows}</table>")
    return layout("Memory and CPU", body, w["run_id"], is_live(w))


def pools_page(db: Monitoring, w: dict) -> str:
    blocks = "".join(f'<tr><td>{esc(b["executor"])}</td><td>{esc(b["block_id"])}</td><td>{esc(b["job_id"])}</td>'
                     f'<td>{esc(b["status"])}</td><td>{esc(b["timestamp"])}</td></tr>' for b in db.blocks(w["run_id"]))
    nodes = []
    for n in db.nodes(w["run_id"]):
        workers = n["worker_count"] or 0
        use = n["busy"] / workers if workers else 0
        nodes.append(f'<tr><td>{esc(n["hostname"])}</td><td>{esc(n["block_id"])}</td><td class="n">{esc(n["cpu_count"])}</td>'
                     f'<td class="n">{fmt_bytes(n["total_memory"])}</td><td class="n">{workers}</td><td class="n">{n["busy"]}</td>'
                     f'<td><svg width="100" height="10"><rect width="{100 * min(use, 1):.0f}" height="10" fill="#3c8dde"/></svg> '
                     f'{100 * use:.0f}%</td><td>{"yes" if n["active"] else "no"}</td><td>{esc(n["last_heartbeat"])}</td>'
                     f'<td>{esc(n["python_v"])}</td></tr>')
    body = ("<h2>Blocks</h2><table id='blocks'><tr><th>executor</th><th>block</th><th>job id</th><th>status</th><th>since</th></tr>"
            f"{blocks}</table><h2>Nodes (pools)</h2><table id='nodes'><tr><th>host</th><th>block</th><th>cpus</th><th>memory</th>"
            f"<th>workers</th><th>busy</th><th>utilization</th><th>active</th><th>last heartbeat</th><th>python</th></tr>"
            f"{''.join(nodes)}</table>")
    return layout("Pools, blocks and nodes", body, w["run_id"], is_live(w))


def dag_page(db: Monitoring, w: dict) -> str:
    graph = db.dependency_graph(w["run_id"], DAG_LIMIT)
    if graph is None:
        return layout("Dependencies", f'<p class="muted">the graph is drawn for runs of up to {DAG_LIMIT} tasks</p>',
                      w["run_id"], is_live(w))
    tasks, failed = graph
    depends = {tid: [int(d) for d in (deps or "").split(",") if d.strip().isdigit()] for tid, _, deps in tasks}
    apps = sorted({app for _, app, _ in tasks})
    color = {a: APP_COLORS[i % len(APP_COLORS)] for i, a in enumerate(apps)}
    level: dict[int, int] = {}
    for tid in sorted(depends):   # a task depends only on earlier tasks, so ids are a topological order
        level[tid] = 1 + max((level.get(d, 0) for d in depends[tid]), default=-1)
    columns: dict[int, list[int]] = {}
    for tid in sorted(level):
        columns.setdefault(level[tid], []).append(tid)
    dx, dy = 60, 16
    pos = {tid: (20 + lvl * dx, 12 + i * dy) for lvl, ids in columns.items() for i, tid in enumerate(ids)}
    edges = "".join(f'<line x1="{pos[d][0]}" y1="{pos[d][1]}" x2="{pos[t][0]}" y2="{pos[t][1]}" stroke="#aab" stroke-width="0.6"/>'
                    for t in depends for d in depends[t] if d in pos)
    app_of = {tid: app for tid, app, _ in tasks}
    ring = ' stroke="#d64545" stroke-width="2.5"'
    nodes = "".join(f'<circle cx="{x}" cy="{y}" r="5" fill="{color[app_of[t]]}"{ring if t in failed else ""}>'
                    f'<title>task {t} {esc(app_of[t])}{" failed" if t in failed else ""}</title></circle>'
                    for t, (x, y) in pos.items())
    width = 40 + dx * (max(columns, default=0) + 1)
    height = 24 + dy * max((len(c) for c in columns.values()), default=1)
    legend = " ".join(f'<span style="color:{color[a]}">&#9632;</span> {esc(a)}' for a in apps)
    body = (f'<p>{len(tasks)} tasks; columns are dependency depth; failed tasks ringed red. {legend}</p>'
            f'<svg width="{width}" height="{height}" id="dag">{edges}{nodes}</svg>')
    return layout("Dependencies", body, w["run_id"], is_live(w))


def task_page(db: Monitoring, w: dict, task_id: int) -> str | None:
    t = db.task(w["run_id"], task_id)
    if t is None:
        return None
    fields = ("task_func_name", "task_depends", "task_time_invoked", "task_time_returned", "task_fail_count",
              "task_stdout", "task_stderr", "task_memoize", "task_hashsum")
    info = "".join(f"<tr><th>{f}</th><td>{esc(t[f])}</td></tr>" for f in fields)
    status = "".join(f"<tr><td>{esc(s)}</td><td>{esc(ts)}</td><td class='n'>{esc(tr)}</td></tr>" for s, ts, tr in t["status"])
    tries = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r[:-1]) + f"<td><pre>{esc(r[-1])}</pre></td></tr>"
                    for r in t["tries"])   # the last column is the fail history
    samples = "".join(f"<tr><td>{esc(ts)}</td><td class='n'>{fmt_bytes(rss)}</td><td class='n'>{fmt_bytes(vms)}</td>"
                      f"<td class='n'>{fmt_seconds(u)}</td><td class='n'>{fmt_seconds(s)}</td></tr>"
                      for ts, rss, vms, u, s in t["resources"])
    body = (f"<table>{info}</table><h2>States</h2><table><tr><th>state</th><th>time</th><th>try</th></tr>{status}</table>"
            "<h2>Tries</h2><table><tr><th>try</th><th>host</th><th>block</th><th>executor</th><th>launched</th><th>running</th>"
            f"<th>returned</th><th>failures</th></tr>{tries}</table>"
            "<h2>Resource samples</h2><table><tr><th>time</th><th>memory (RSS)</th><th>virtual</th><th>user</th><th>system</th></tr>"
            f"{samples}</table>")
    return layout(f"Task {task_id}", body, w["run_id"], is_live(w))


def error_page(title: str, message: str) -> str:
    return layout(title, f"<p>{esc(message)}</p>")
