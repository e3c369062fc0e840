"""How the console shows things: short, fixed-width cells that fit 80 columns."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

STATUSES = (None, "running", "queued", "failed", "succeeded", "cancelled")


def progress_bar(job: dict[str, Any], width: int = 10) -> str:
    """A job's progress: a bar of `width` cells, then its items done out of those found. Items a cancel left
    undone do not count as done: a job cancelled at 48 of 518 pages shows 48/518."""
    p = job["progress"]
    done = int(p["fetched"] + p["failed"] + p["skipped"] - p.get("cancelled", 0))
    total = max(int(p["found"]), done)
    if not total:
        return "·" * width + "   -"
    filled = round(width * done / total)
    return "█" * filled + "░" * (width - filled) + f" {done}/{total}"


def age(iso: str | None, now: datetime | None = None) -> str:
    """How long ago an ISO 8601 time was, in its largest whole unit (`3d`, `5h`, `2m`, `40s`); `-` for none."""
    if not iso:
        return "-"
    return span(((now or datetime.now(UTC)) - datetime.fromisoformat(iso)).total_seconds())


def span(seconds: float) -> str:
    """Seconds in their largest whole unit: `3d`, `5h`, `2m`, `40s` (never below `0s`)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def source_label(job: dict[str, Any], width: int = 18) -> str:
    """A job's source by its URL without the scheme (`docs.acme.example/guide`, cut to `width` so that a row fits
    80 columns), else (uploads) as `type:id-prefix`."""
    url = job.get("source_url")
    if url:
        bare = str(url).split("://", 1)[-1].rstrip("/")
        return bare if len(bare) <= width else bare[: width - 1] + "…"
    return f"{job.get('source_type') or '-'}:{(job.get('source_id') or '')[:8]}"


def job_row(job: dict[str, Any]) -> tuple[str, ...]:
    """A job's cells in the jobs table."""
    return (
        job["status"],
        job.get("tenant", "")[:12],
        source_label(job),
        progress_bar(job),
        str(job["attempts"]),
        age(job["created_at"]),
        job["id"][:8],
    )


def job_detail(job: dict[str, Any]) -> str:
    """A job's details: status, tenant, source, times, progress and its first 50 errors."""
    p = job["progress"]
    lines = [
        f"job {job['id']}  ({job['status']}, {job['priority']} priority)",
        f"tenant {job.get('tenant', job['tenant_id'])}, source {job.get('source_url') or job.get('source_type')} "
        f"({job.get('source_type')} {(job.get('source_id') or '')[:8]})",
        f"created {job['created_at']}, started {job['started_at'] or '-'}, finished {job['finished_at'] or '-'}",
        f"pages found {p['found']}, fetched {p['fetched']} ({p['unchanged']} unchanged), failed {p['failed']}, "
        f"skipped {p['skipped']}, chunks embedded {p['chunks_embedded']}; attempts {job['attempts']}",
        "",
    ]
    errors = job.get("errors") or []
    lines.append(f"{len(errors)} error(s):" if errors else "no errors")
    for e in errors[:50]:
        lines.append(f"  {e.get('item') or 'job'}: {e['error']}")
    return "\n".join(lines)


def scale(values: Iterable[float]) -> str:
    """A sparkline's scale: what its full height means (`(peak 12)`), or that it is flat at zero."""
    peak = max(values, default=0.0)
    return f"(peak {peak:g})" if peak else "(all 0)"


def overview_text(snapshot: dict[str, Any]) -> str:
    """The overview of a snapshot: queues, workers, jobs, chat activity and latency, and each model's
    request slots."""
    q, jobs, chat = snapshot["queues"], snapshot["jobs"], snapshot["chat"]
    workers = snapshot["workers"]
    queue_line = (
        "queues: Redis unreachable"
        if "error" in q
        else f"queues  high {q.get('high', 0)}  normal {q.get('normal', 0)}  delayed {q.get('delayed', 0)}"
    )
    slots = sum(int(w.get("concurrency", 0)) for w in workers)
    per_minute = chat["per_minute"]
    rate = "-" if chat["cache_hit_rate"] is None else f"{chat['cache_hit_rate']:.0%}"
    p50 = "-" if chat["p50_ms"] is None else f"{chat['p50_ms']} ms"
    p95 = "-" if chat["p95_ms"] is None else f"{chat['p95_ms']} ms"
    llm = [
        f"model   {s['generator']}: {s['in_flight']}/{s['limit']} in flight, {s['waiting']} waiting, wait p95 "
        + ("-" if s["wait_p95_ms"] is None else f"{s['wait_p95_ms']} ms")
        for s in snapshot.get("llm", [])
    ]
    return "\n".join(
        [
            queue_line,
            f"workers {len(workers)} process(es), {slots} task slot(s)",
            f"jobs    running {jobs['running']}  queued {jobs['queued']}  failed {jobs['failed']} (24h)  "
            f"succeeded {jobs['succeeded']} (24h)",
            f"chat    {per_minute[-1]} question(s) this minute, {chat['answered_15m']} in 15 min, "
            f"{chat['connections']} open connection(s)",
            f"        latency p50 {p50}  p95 {p95} (5 min)  cache hits {rate}",
            *llm,
        ]
    )


def tenant_row(t: dict[str, Any]) -> tuple[str, ...]:
    """A tenant's cells in the tenants table; `asked` counts the questions of its keys and of the admin token."""
    return (
        t["name"][:20],
        str(t.get("documents", 0)),
        str(t.get("chunks", 0)),
        str(int(t.get("questions", 0)) + int(t.get("admin_questions", 0))),
        str(t.get("active_keys", 0)),
        age(t.get("last_crawl")) + (" ago" if t.get("last_crawl") else ""),
        until(t.get("next_crawl")),
    )


def until(iso: str | None, now: datetime | None = None) -> str:
    """How long until an ISO 8601 time, as `in 4h`; `due` once it has passed; `-` for none."""
    if not iso:
        return "-"
    ahead = (datetime.fromisoformat(iso) - (now or datetime.now(UTC))).total_seconds()
    return "due" if ahead <= 0 else "in " + span(ahead)


def sources_text(sources: list[dict[str, Any]]) -> list[str]:
    """A tenant's sources: URLs (or files), refresh, last and next crawl, last job, documents and chunks."""
    lines = [f"{len(sources)} source(s)" if sources else "no sources"]
    for s in sources:
        names = s.get("urls") or s.get("files") or []
        more = f"  (+{len(names) - 1} more)" if len(names) > 1 else ""
        lines.append(f"{s['type']:<6} {(names[0] if names else s['id'])[:60]}{more}")
        last = s.get("last_job") or {}
        lines.append(
            f"       refresh {s.get('refresh') or 'never'} · last crawl "
            + (age(s["last_crawl_at"]) + " ago" if s.get("last_crawl_at") else "-")
            + f" · next {until(s.get('next_crawl_at'))} · last job {last.get('status', '-')}"
            + f" · {s['documents']} docs, {s['chunks']} chunks"
        )
    return lines


def tenant_text(t: dict[str, Any], sources: list[dict[str, Any]], keys: list[dict[str, Any]]) -> str:
    """A tenant's details: questions asked (by keys, with the admin token), its sources, then its keys."""
    asked = (
        f"questions: {t.get('questions', 0)} on its keys, {t.get('admin_questions', 0)} with the admin token "
        "(those in kept conversations)"
    )
    return "\n".join([f"tenant {t['name']}", asked, "", *sources_text(sources), "", keys_text(t["name"], keys)])


def keys_text(tenant: str, keys: list[dict[str, Any]]) -> str:
    """A tenant's keys with their usage: what a trial has left."""
    lines = [f"keys of {tenant}", ""]
    if not keys:
        lines.append("no keys")
    for k in keys:
        used = f"{k['used']}/{k['quota']}" if k.get("quota") else str(k["used"])
        kind = k["kind"] + (" trial" if k.get("trial") else "")
        expires = (k.get("expires_at") or "-")[:16]
        lines.append(f"{k['prefix']}…  {kind:<12} {k['status']:<9} used {used:<9} expires {expires}")
        if k.get("origins"):
            lines.append(f"    origins: {', '.join(k['origins'])}")
    return "\n".join(lines)


def question_row(q: dict[str, Any]) -> tuple[str, ...]:
    """A recent question's cells in the questions table: age, tenant, question, the answer's start (or
    `refused`), its rating and latency."""
    answer = "refused" if q.get("refused") else " ".join((q.get("answer") or "").split())
    return (
        age(q["created_at"]),
        q["tenant"][:8],
        (q["question"] or "")[:24],
        answer[:20],
        q.get("rating") or "-",
        f"{q['latency_ms']} ms",
    )


def exchange_text(q: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """A conversation up to the answer `q`: every question and answer, each answer with its citations and rating."""
    lines = [f"tenant {q['tenant']}, conversation {q['conversation_id']}", ""]
    for m in messages:
        if m["role"] == "user":
            lines += [f"Q: {m['content']}", ""]
            continue
        rating = m.get("rating") or "not rated"
        comment = f': "{m["comment"]}"' if m.get("comment") else ""
        lines += [f"A: {m['content']}", f"   {len(m['citations'])} citation(s), {rating}{comment}"]
        lines += [
            f"   [{c.get('n', i + 1)}] {c.get('title') or ''} {c.get('url', '')}" for i, c in enumerate(m["citations"])
        ]
        lines.append("")
        if m["message_id"] == q["message_id"]:
            break
    return "\n".join(lines)


def gap_row(t: dict[str, Any]) -> tuple[str, ...]:
    """An unanswered topic's cells in the gaps table: tenant, how often asked, an example, why, last asked."""
    reasons = t["reasons"]
    why = ", ".join(
        f"{n} {label}"
        for label, n in (
            ("refused", reasons["refused"]),
            ("down", reasons["rated_down"]),
            ("weak", reasons["low_support"]),
        )
        if n
    )
    return (t["tenant"][:10], str(t["count"]), (t["examples"] or ["-"])[0][:28], why[:18], age(t["last_seen"]))


def minute(iso: str | None) -> str:
    """An ISO 8601 time to the minute, as people read it: `2026-12-03 09:30`."""
    return iso[:16].replace("T", " ") if iso else "-"


def gap_text(t: dict[str, Any]) -> str:
    """An unanswered topic whole: counts, examples, when, why, and the pages that came closest."""
    r = t["reasons"]
    lines = [
        f"tenant {t['tenant']}: asked {t['count']} time(s), first {minute(t['first_seen'])}, "
        f"last {minute(t['last_seen'])}",
        f"refused {r['refused']}, rated down {r['rated_down']}, weak support {r['low_support']}",
        "",
        "examples:",
        *(f"  {e}" for e in t["examples"]),
        "",
        "closest pages (what the site has nearest to it):" if t["closest_pages"] else "no page comes close",
        *(f"  {p['similarity']:.2f}  {p['title'] or ''}  {p['url']}" for p in t["closest_pages"]),
    ]
    return "\n".join(lines)
