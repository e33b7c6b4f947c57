"""``samstream data build``: install, render, resume, log, summarise.

Layout under ROOT (default ``data/corpus``)::

    train/...flac, val/...flac    the rendered sources (48 kHz mono 16-bit FLAC)
    manifest.jsonl                one line per file (see ``manifest``)
    skipped.jsonl                 every skipped source with its reason
    build_report.json             counts, hours per class, disk size, build time
    validation/                   the fixed validation set (see ``validation``)
    .build/done.jsonl             the resume journal: one line per finished job

Every job's randomness derives from its key, and finished jobs are journalled line by
line, so an interrupted build (Ctrl-C, a crash, a power cut) resumes where it stopped
and produces the same corpus. Unreadable, empty and silent sources are skipped with
the reason logged and counted; a missing package or tool ends the build with one line.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter

from . import render_drums, render_effects, render_instruments, render_noise, render_speech, user_data
from .audio import SkipFile
from .jobs import Context, Job, job_captions
from .manifest import Entry, hours_per_class, write_manifest
from .system import MissingDependency, ensure_packages, require_file, require_tool

FAMILIES = {  # name -> (module, Debian packages, tools)
    "speech": (render_speech, ["espeak-ng"], ["espeak-ng"]),
    "instruments": (render_instruments, ["fluidsynth", "fluid-soundfont-gm"], ["fluidsynth"]),
    "drums": (render_drums, ["hydrogen-drumkits"], []),
    "effects": (render_effects, ["sonic-pi-samples", "lmms-common", "wesnoth-1.16-data",
                                 "wesnoth-1.16-music", "supertuxkart-data"], []),
    "noise": (render_noise, [], []),
}
KEY_FAMILY = {"speech": "speech", "instrument": "instruments", "drums": "drums", "effect": "effects",
              "music": "effects", "rule": "effects", "noise": "noise", "user": "user"}
RENDERERS = {"speech": render_speech, "instrument": render_instruments, "drums": render_drums,
             "effect": render_effects, "music": render_effects, "noise": render_noise, "user": user_data}


class BuildError(ValueError):
    """A build option that cannot be used; one clear line."""


def _worker(args: tuple[Job, Context]) -> tuple[str, dict]:
    job, ctx = args
    try:
        entry = RENDERERS[job.family].render(job, ctx)
        return job.key, {"key": job.key, "entry": entry.to_json()}
    except SkipFile as reason:
        return job.key, {"key": job.key, "skip": str(reason), "source": job.params.get("path", job.key)}
    except MissingDependency:
        raise
    except Exception as error:       # a bad source must not end a multi-hour build
        reason = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return job.key, {"key": job.key, "skip": reason, "source": job.params.get("path", job.key)}


def read_journal(path: str) -> dict[str, dict]:
    """{key: record} from the journal; a torn last line (a crash mid-write) is ignored."""
    done: dict[str, dict] = {}
    if not os.path.isfile(path):
        return done
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "key" in record:
                done[record["key"]] = record
    return done


def refresh_captions(jobs: list[Job], done: dict[str, dict]) -> list[dict]:
    """Give journalled entries the captions the plan gives them now, without rendering again:
    captions are metadata, and a corpus built before a caption rule changed must not keep
    pairing a file with a caption that names another sound. Returns the changed records."""
    changed = []
    for job in jobs:
        record = done.get(job.key)
        if record is None or "entry" not in record:
            continue
        captions = job_captions(job)
        if record["entry"].get("captions") != captions:
            record = {**record, "entry": {**record["entry"], "captions": captions}}
            done[job.key] = record
            changed.append(record)
    return changed


def plan_jobs(ctx: Context, families: list[str]) -> tuple[list[Job], list[dict]]:
    jobs, planned_skips = [], []
    for family in families:
        if family == "effects":
            effect_jobs, unclassified = render_effects.plan(ctx)
            jobs += effect_jobs
            planned_skips += [{"key": f"rule/{path}", "skip": reason, "source": path} for path, reason in unclassified]
        elif family != "user":
            jobs += FAMILIES[family][0].plan(ctx)
    if ctx.user_folder or ctx.user_manifest:
        jobs += user_data.plan(ctx)
    keys = Counter(job.key for job in jobs) + Counter(job.relpath for job in jobs)
    duplicates = [key for key, n in keys.items() if n > 1]
    if duplicates:
        raise BuildError(f"internal error: two jobs write {duplicates[0]}")
    return jobs, planned_skips


def prepare(families: list[str], allow_install: bool, log) -> None:
    packages = [p for f in families if f in FAMILIES for p in FAMILIES[f][1]]
    ensure_packages(packages, allow_install=allow_install, log=log)
    for family in families:
        for tool in FAMILIES.get(family, (None, [], []))[2]:
            require_tool(tool)
    if "instruments" in families:
        from .system import SOUNDFONT
        require_file(SOUNDFONT, "fluid-soundfont-gm")


def disk_bytes(root: str) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            total += os.path.getsize(os.path.join(directory, name))
    return total


def build(root: str, families: list[str] | None = None, jobs: int = 2, scale: float = 1.0,
          allow_install: bool = True, user_folder: str | None = None, user_manifest: str | None = None,
          seed: int = 20261130, progress: bool = True, stop_after: int | None = None, log=None) -> dict:
    """Render the corpus under ``root``; returns the build report (also written as JSON)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    families = list(families or FAMILIES)
    unknown = [f for f in families if f not in FAMILIES and f != "user"]
    if unknown:
        raise BuildError(f"unknown family {unknown[0]!r}: choose from {', '.join([*FAMILIES, 'user'])}")
    if jobs < 1:
        raise BuildError(f"--jobs must be at least 1, got {jobs}")
    if not scale > 0:
        raise BuildError(f"--scale must be positive, got {scale}")
    if (user_folder or user_manifest) and "user" not in families:
        families.append("user")
    prepare(families, allow_install, log)
    ctx = Context(root=os.path.abspath(root), scale=scale, seed=seed, user_folder=user_folder,
                  user_manifest=user_manifest)
    all_jobs, planned_skips = plan_jobs(ctx, families)
    state = os.path.join(ctx.root, ".build")
    os.makedirs(state, exist_ok=True)
    journal_path = os.path.join(state, "done.jsonl")
    done = read_journal(journal_path)
    new_skips = [record for record in planned_skips if record["key"] not in done]
    if new_skips:
        with open(journal_path, "a", encoding="utf-8") as journal:
            journal.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in new_skips)
        done.update((record["key"], record) for record in new_skips)
    recaptioned = refresh_captions(all_jobs, done)
    if recaptioned:
        with open(journal_path, "a", encoding="utf-8") as journal:
            journal.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in recaptioned)
        log(f"samstream data build: new captions for {len(recaptioned)} files already rendered")
    pending = [job for job in all_jobs if job.key not in done]
    log(f"samstream data build: {len(all_jobs)} jobs, {len(all_jobs) - len(pending)} already done, "
        f"{len(pending)} to render into {ctx.root} ({jobs} processes)")
    started = time.monotonic()
    finished = 0
    try:
        with open(journal_path, "a", encoding="utf-8") as journal:
            bar = _progress(len(all_jobs), len(all_jobs) - len(pending), progress)
            with multiprocessing.Pool(jobs) if jobs > 1 else _Serial() as pool:
                for key, record in pool.imap_unordered(_worker, [(job, ctx) for job in pending], chunksize=1):
                    journal.write(json.dumps(record, ensure_ascii=False) + "\n")
                    journal.flush()
                    done[key] = record
                    finished += 1
                    if bar is not None:
                        bar.update(1)
                    if "skip" in record:
                        log(f"skipped {record['source']}: {record['skip']}")
                    if stop_after is not None and finished >= stop_after:
                        raise KeyboardInterrupt
            if bar is not None:
                bar.close()
    finally:
        _add_time(state, time.monotonic() - started)
    return finalize(ctx, families, all_jobs, planned_skips, done, log)


def finalize(ctx: Context, families: list[str], all_jobs: list[Job], planned_skips: list[dict], done: dict,
             log) -> dict:
    """Manifest = this plan's finished jobs + journalled results of families not rebuilt now
    (``--only drums`` re-renders drums and keeps everything else)."""
    keys = {job.key for job in all_jobs} | {record["key"] for record in planned_skips}
    kept = {k for k in done if KEY_FAMILY.get(k.split("/", 1)[0]) not in families}
    records = [done[k] for k in sorted(keys | kept) if k in done]
    entries = [Entry.from_json(r["entry"]) for r in records if "entry" in r]
    skips = [r for r in records if "skip" in r]
    write_manifest(os.path.join(ctx.root, "manifest.jsonl"), entries)
    with open(os.path.join(ctx.root, "skipped.jsonl"), "w", encoding="utf-8") as handle:
        for record in skips:
            handle.write(json.dumps({"source": record["source"], "reason": record["skip"]}) + "\n")
    reasons = Counter(record["skip"].split(":")[0] for record in skips)
    table = hours_per_class(entries)
    report = {
        "files": len(entries),
        "skipped": len(skips),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "hours_total": round(sum(e.seconds for e in entries) / 3600.0, 3),
        "hours_per_class": {c: {s: round(h, 3) for s, h in row.items()} for c, row in table.items()},
        "disk_bytes": disk_bytes(ctx.root),
        "build_seconds": round(_read_time(os.path.join(ctx.root, ".build")), 1),
        "scale": ctx.scale,
        "seed": ctx.seed,
    }
    with open(os.path.join(ctx.root, "build_report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    log(f"samstream data build: {report['files']} files, {report['hours_total']:.2f} h, "
        f"{report['disk_bytes'] / 1e9:.2f} GB, {report['skipped']} skipped {report['skipped_by_reason']}, "
        f"{report['build_seconds']:.0f} s")
    return report


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="file", desc="rendering", dynamic_ncols=True)


def _add_time(state: str, seconds: float) -> None:
    path = os.path.join(state, "seconds")
    total = _read_time(state) + seconds
    with open(path + ".part", "w") as handle:
        handle.write(f"{total:.3f}\n")
    os.replace(path + ".part", path)


def _read_time(state: str) -> float:
    try:
        with open(os.path.join(state, "seconds")) as handle:
            return float(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0


class _Serial:
    """The in-process stand-in for a one-process pool."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap_unordered(function, items, chunksize=1):
        return map(function, items)


def clean(root: str) -> None:
    """Remove a corpus folder (only if it looks like one)."""
    if os.path.isdir(os.path.join(root, ".build")):
        shutil.rmtree(root)
