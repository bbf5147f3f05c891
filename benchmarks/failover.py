"""Failover with fencing: runtimes die or freeze under live sessions; nothing stale gets out.

A control plane on PostgreSQL (``rspp cp serve``, fresh database) and 3 runtimes
(``rspp serve --control-plane``), each a child process; N live WebSocket sessions
(:class:`~rspp.client.FailoverClient`, routed by the control plane) keep asking typed
questions (``benchmarks/specs/text_assistant.yaml``: local responder + espeak-ng, reply
audio paced in real time). For a bounded number of rounds a random runtime that holds
sessions is, at a random moment, SIGKILLed (a replacement process starts) or SIGSTOPped
and SIGCONTed once its sessions moved (the zombie: it wakes up holding sessions whose
leases rotated away).

Reported:

- ``rotations``: lease epochs issued above 1 (``cp_lease_epochs``; every one a failover);
- ``sessions_resumed``: session moves a client completed (new runtime, newer epoch);
- ``resume_p50_ms`` / ``resume_p99_ms``: from the control plane rotating the lease
  (failure detected: heartbeat timeout, lease expired) to the client's ``ready`` on the
  new runtime (the rotation to the epoch the client resumed at: when the session's new
  runtime failed too before its client arrived, the rotation away from that one);
  ``resume_from_first_rotation_*``: from the first rotation away from the client's old
  epoch; ``resume_from_failure_*``: from the signal to that ``ready``;
- ``stale_outputs_sent``: outputs a runtime sent for epoch e after the control plane
  had issued e+1 (each output's epoch and a send-time stamp come with it, protocol 1.2:
  see :func:`classify_outputs`; compared with ``cp_lease_epochs.issued_at_ms``) — must
  be 0; ``late_reads``: outputs sent under a valid lease but read on a superseded
  connection after the client was ready on the newer one (a starved client);
  ``stale_outputs_accepted``: outputs the client library handed to its caller although
  it had seen a newer epoch — must be 0; ``stale_outputs_refused``: outputs the client
  refused by epoch (fencing at the resource); ``outputs_on_superseded_connections``:
  whatever arrived on a superseded connection after the newer one was ready (the
  count this benchmark reported as stale before protocol 1.2; late reads included).
  A ``clear`` on the old connection (the woken runtime retracting the audio of the
  turn it lost) is no output of the old epoch and is counted apart, as
  ``late_retractions``;
- ``fenced_outputs``: outputs the woken zombies withheld (their lease had lapsed);
- ``turns_lost``: questions sent on a healthy connection that got no terminal turn event
  (neither commit/close nor abort) and were not interrupted by a failover;
  ``turns_interrupted``: in flight when their runtime failed (the client reports the open
  turn aborted ``runtime_failover``); ``records_lost``: committed turns (seen by the
  client) whose commit record is missing from the runtime's timeline file.

Usage: ``python benchmarks/failover.py [--quick] [--sessions N] [--rounds R] [--seed S]``.
The last line printed is JSON. SIGUSR1 ends the run after the current round, with its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser
from _fleet import (
    Fleet,
    FleetOptions,
    Talker,
    create_database,
    db_rows,
    drop_database,
    open_talker,
    poll_until,
)


async def failover_scenario(work: Path, db_url: str, *, sessions: int, rounds: int,
                            seed: int = 7, options: FleetOptions | None = None,
                            actions: tuple[str, ...] = (), log: Any = None) -> dict[str, Any]:
    """Run the scenario on a fresh fleet (see the module docstring); the report.

    ``actions``: the rounds' failures in turn (``kill`` / ``zombie``); random when empty.
    """
    say = log or (lambda *a: None)
    rng = random.Random(seed)
    fleet = await Fleet(work, db_url, options).start()
    talkers: list[Talker] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    rounds_done: list[dict[str, Any]] = []
    loads: list[float] = [os.getloadavg()[0]]
    replacements: list[asyncio.Task[Any]] = []
    t_start = time.monotonic()
    try:
        for _ in range(sessions):
            talkers.append(await open_talker(fleet))
        tasks = [asyncio.create_task(t.talk(stop, gap_s=rng.uniform(0.1, 0.5)))
                 for t in talkers]
        # warm-up: every session completed a turn
        await poll_until(lambda: all(any(x.outcome == "closed" for x in t.turns)
                                     for t in talkers), 120, 0.1)
        say(f"warm: {sessions} sessions on {sorted(fleet.live())}")
        for r in range(rounds):
            if enough.is_set():  # SIGUSR1: no more rounds, report what was done
                break
            loads.append(os.getloadavg()[0])
            on: dict[str, list[Talker]] = {}
            for t in talkers:
                if t.client is not None and t.client.runtime_id is not None:
                    on.setdefault(t.client.runtime_id, []).append(t)
            candidates = [rid for rid in fleet.live() if on.get(rid)]
            if not candidates or len(fleet.live()) < 2:
                await asyncio.sleep(0.5)
                continue
            victim = rng.choice(candidates)
            moved = on[victim]
            await asyncio.sleep(rng.uniform(0.2, 1.5))  # a random moment mid-conversation
            zombie = (actions[r % len(actions)] == "zombie") if actions else rng.random() < 0.5
            proc = fleet.runtimes[victim]
            t_fail_ms = time.time_ns() // 1_000_000
            proc.send(signal.SIGSTOP if zombie else signal.SIGKILL)
            if not zombie:
                replacements.append(asyncio.create_task(fleet.start_runtime()))
            t0 = time.monotonic()
            await poll_until(_all_left(moved, victim), 60)
            left = sum(1 for t in moved if t.client is not None
                       and t.client.runtime_id == victim)
            if zombie:
                proc.send(signal.SIGCONT)
            rounds_done.append({"round": r, "victim": victim, "action":
                                "sigstop+sigcont" if zombie else "sigkill",
                                "sessions": len(moved), "not_moved": left,
                                "failed_at_ms": t_fail_ms,
                                "moved_s": round(time.monotonic() - t0, 2)})
            say(f"round {r}: {rounds_done[-1]}")
            for t in moved:
                for ev in (t.client.failovers[-1:] if t.client is not None else []):
                    if ev.resumed_at is not None and ev.resumed_at - ev.lost_at > 4:
                        say(f"  slow {t.session_id[:10]} {ev.from_runtime}->{ev.to_runtime} "
                            f"{ev.resumed_at - ev.lost_at:.1f}s (placed after "
                            f"{(ev.placed_at or 0) - ev.lost_at:.1f}s, route call "
                            f"{ev.route_s or 0:.2f}s) attempts {ev.attempts} "
                            f"{ev.errors}")
            if zombie:  # the zombie learns it lost the leases and drops the sessions
                t1 = time.monotonic()
                while time.monotonic() - t1 < 30:
                    text = await fleet.scrape(victim)
                    if _metric(text, "rspp_sessions_live") == 0.0:
                        rounds_done[-1]["zombie_dropped"] = _metric(
                            text, 'rspp_sessions_moved_total{how="authority_lost"}')
                        break
                    await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in replacements:
            with contextlib.suppress(Exception):
                await task
        fenced = 0
        starts: dict[str, list[float]] = {}  # step -> [sum, count] of resumed starts
        for rid in fleet.live():
            text = await fleet.scrape(rid)
            fenced += int(_metric(text, "rspp_outputs_fenced_total") or 0)
            for step in ("control_plane", "total"):
                labels = f'{{kind="resumed",step="{step}"}}'
                acc = starts.setdefault(step, [0.0, 0.0])
                acc[0] += _metric(text, f"rspp_session_start_seconds_sum{labels}") or 0.0
                acc[1] += _metric(text, f"rspp_session_start_seconds_count{labels}") or 0.0
        await asyncio.gather(*(t.close() for t in talkers), return_exceptions=True)
        report = await _report(fleet, talkers, rounds_done, fenced,
                               time.monotonic() - t_start)
        loads.append(os.getloadavg()[0])
        report["load_average_1m"] = {"start": loads[0], "max": max(loads), "end": loads[-1]}
        # the resumed session starts of the runtimes still alive at the end (killed ones'
        # metrics are gone): mean seconds to the control-plane reads and to the whole start
        for step, (total, count) in starts.items():
            report[f"runtime_resume_start_{step}_mean_ms"] = (
                round(total / count * 1000, 1) if count else None)
        return report
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in talkers:
            if t.client is not None:
                with contextlib.suppress(Exception):
                    await t.client.close()
        await fleet.stop()


def classify_outputs(talkers: list[Talker], issued: dict[tuple[str, int], int],
                     holders: dict[tuple[str, int], str]) -> dict[str, Any]:
    """Every output the clients received, told apart by when the runtime sent it.

    Each output is of the epoch its connection last named (``ready``, then ``epoch``
    events, protocol 1.2), and the ``epoch`` event before it carries the runtime's wall
    clock when it passed the runtime's lease gate: a lower bound on the output's send
    time, at most ``EPOCH_MARK_MS`` (250 ms) before it while outputs flow. A connection's
    authority comes from the epoch it was ready at, extended only by rotations in place
    (every later epoch it names held by the same runtime). An output is:

    - ``stale_outputs_sent``: sent at or after the control plane issued the epoch that
      superseded that authority (same machine, same wall clock);
    - ``late_reads``: sent before that, but read on a superseded connection after the
      client was ready on the newer one (a starved client reading its socket late);
    - ``outputs_unstamped``: no ``epoch`` event before it (a runtime without protocol
      1.2; must be 0).
    """
    sent = late = unstamped = 0
    worst_ms = 0
    sessions: set[str] = set()
    for t in talkers:
        sid = t.session_id
        for (rid, ready, epoch, mark, superseded, _refused), n in t.outputs.items():
            if ready is None or epoch is None or mark is None:
                unstamped += n
                continue
            auth = ready
            while auth < epoch and holders.get((sid, auth + 1)) == rid:
                auth += 1  # a rotation in place: the same runtime holds the next epoch
            after = issued.get((sid, auth + 1))
            if after is not None and mark >= after:
                sent += n
                sessions.add(sid)
                worst_ms = max(worst_ms, mark - after)
                print(f"stale sent {sid[:10]}: {n} outputs of {rid} (ready at epoch {ready}, "
                      f"named {epoch}, authority {auth}) stamped {mark - after} ms after "
                      f"epoch {auth + 1} was issued to {holders.get((sid, auth + 1))}"
                      f"{' (superseded connection)' if superseded else ''}", file=sys.stderr)
            elif superseded:
                late += n
    return {"stale_outputs_sent": sent, "stale_sent_sessions": len(sessions),
            "stale_sent_max_after_rotation_ms": worst_ms, "late_reads": late,
            "outputs_unstamped": unstamped}


def _histogram(keys: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in keys:
        out[key] = out.get(key, 0) + 1
    return out


#: set by SIGUSR1: the scenario runs no further round and reports
enough = asyncio.Event()


def _metric(scrape: str, name: str) -> float | None:
    for line in scrape.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _all_left(talkers: list[Talker], runtime: str) -> Callable[[], bool]:
    """True once no live client of ``talkers`` is still on ``runtime``."""
    return lambda: not any(t.client is not None and not t.client.ended
                           and t.client.runtime_id == runtime for t in talkers)


async def _report(fleet: Fleet, talkers: list[Talker], rounds: list[dict[str, Any]],
                  fenced: int, wall_s: float) -> dict[str, Any]:
    rows = await db_rows(fleet.db_url, "SELECT session_id, epoch, holder, issued_at_ms FROM "
                         "cp_lease_epochs")
    issued = {(r["session_id"], r["epoch"]): r["issued_at_ms"] for r in rows}
    holders = {(r["session_id"], r["epoch"]): r["holder"] for r in rows}
    fencing = classify_outputs(talkers, issued, holders)
    rotations = sum(1 for r in rows if r["epoch"] > 1)
    resume_ms: list[float] = []
    connect_ms: list[float] = []
    placed_ms: list[float] = []
    from_failure_ms: list[float] = []
    from_first_ms: list[float] = []
    fail_times = sorted(r["failed_at_ms"] for r in rounds)
    resumed = 0
    stale = 0
    for t in talkers:
        c = t.client
        if c is None:
            continue
        stale += c.stale_outputs
        if c.stale_outputs:
            moves = [(e.reason, e.from_runtime, e.from_epoch, e.to_runtime, e.to_epoch)
                     for e in c.failovers]
            print(f"stale {t.session_id[:10]} {c.stale_kinds} {moves}", file=sys.stderr)
        for ev in c.failovers:
            if ev.to_epoch is None or ev.to_epoch <= ev.from_epoch or ev.resumed_wall_ms is None:
                continue
            resumed += 1
            if ev.placed_at is not None and ev.resumed_at is not None:
                connect_ms.append((ev.resumed_at - ev.placed_at) * 1000)
                placed_ms.append((ev.placed_at - ev.lost_at) * 1000)
            at = issued.get((t.session_id, ev.to_epoch))
            if at is not None:
                resume_ms.append(max(0.0, ev.resumed_wall_ms - at))
            first = issued.get((t.session_id, ev.from_epoch + 1))
            if first is not None:
                from_first_ms.append(max(0.0, ev.resumed_wall_ms - first))
            before = [f for f in fail_times if f <= ev.resumed_wall_ms]
            if before:
                from_failure_ms.append(ev.resumed_wall_ms - before[-1])
    turns = [x for t in talkers for x in t.turns]
    outcomes: dict[str, int] = {}
    for x in turns:
        key = x.outcome.split(":")[0]
        outcomes[key] = outcomes.get(key, 0) + 1
    records_lost = 0
    for t in talkers:
        for x in t.turns:
            if x.outcome != "closed" or x.turn_id is None or x.runtime is None:
                continue
            # (a session back on a runtime it left keeps its earlier run as <sid>.<n>.jsonl)
            runs = (fleet.work / "timelines" / x.runtime).glob(f"{t.session_id}*.jsonl")
            text = "".join(run.read_text(errors="replace") for run in runs)
            if f'"turn_id":"{x.turn_id}"' not in text:
                records_lost += 1
    return {
        "rounds_detail": rounds,
        "benchmark": "failover",
        "sessions": len(talkers),
        "rounds": len(rounds),
        "kills": sum(1 for r in rounds if r["action"] == "sigkill"),
        "zombies": sum(1 for r in rounds if r["action"] != "sigkill"),
        "rotations": rotations,
        "sessions_resumed": resumed,
        "sessions_not_moved": sum(r["not_moved"] for r in rounds),
        "resume_p50_ms": round(percentile(resume_ms, 50), 1),
        "resume_p99_ms": round(percentile(resume_ms, 99), 1),
        "resume_max_ms": round(max(resume_ms, default=0.0), 1),
        "resume_from_first_rotation_p50_ms": round(percentile(from_first_ms, 50), 1),
        "resume_from_first_rotation_p99_ms": round(percentile(from_first_ms, 99), 1),
        "resume_from_failure_p50_ms": round(percentile(from_failure_ms, 50), 1),
        "resume_from_failure_p99_ms": round(percentile(from_failure_ms, 99), 1),
        "client_wait_for_placement_p50_ms": round(percentile(placed_ms, 50), 1),
        "client_connect_p50_ms": round(percentile(connect_ms, 50), 1),
        "client_connect_p99_ms": round(percentile(connect_ms, 99), 1),
        **fencing,
        "stale_outputs_accepted": sum(t.client.stale_outputs_accepted for t in talkers
                                      if t.client is not None),
        "stale_outputs_refused": sum(t.client.refused_outputs for t in talkers
                                     if t.client is not None),
        "outputs_on_superseded_connections": stale,
        "late_retractions": sum(t.client.late_retractions for t in talkers
                                if t.client is not None),
        "fenced_outputs": fenced,
        "turns": len(turns),
        "turns_completed": outcomes.get("closed", 0),
        "turns_interrupted": outcomes.get("interrupted", 0) + outcomes.get("abort", 0),
        "turns_lost": outcomes.get("lost", 0),
        "records_lost": records_lost,
        "client_errors": [t.error for t in talkers if t.error],
        "sessions_ended": sum(1 for t in talkers if t.client is not None and t.client.ended
                              and not (t.client.end_reason or "").startswith("client_end")),
        "end_reasons": _histogram((t.client.end_reason or "?").split(":")[0]
                                  for t in talkers if t.client is not None
                                  and t.client.ended),
        "zombie_sessions_dropped": sum(int(r.get("zombie_dropped") or 0) for r in rounds),
        "heartbeat_timeout_ms": fleet.o.heartbeat_timeout_ms,
        "lease_ttl_ms": fleet.o.lease_ttl_ms,
        "wall_s": round(wall_s, 1),
    }


async def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the processes' logs and timelines in this directory")
    args = parser.parse_args()
    sessions, rounds = (12, 6) if args.quick else (args.sessions, args.rounds)
    db = await create_database()
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    loop.add_signal_handler(signal.SIGTERM, me.cancel)  # clean up the fleet on SIGTERM
    loop.add_signal_handler(signal.SIGUSR1, enough.set)  # end after this round and report
    try:
        with tempfile.TemporaryDirectory(prefix="rspp-failover-") as tmp:
            work = args.keep or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            result = await failover_scenario(work, db, sessions=sessions, rounds=rounds,
                                             seed=args.seed,
                                             log=lambda m: print(m, file=sys.stderr))
    finally:
        await drop_database(db)
    print(f"rotations {result['rotations']}, resumed {result['sessions_resumed']}, resume p99 "
          f"{result['resume_p99_ms']} ms after detection, stale outputs sent "
          f"{result['stale_outputs_sent']}, late reads {result['late_reads']}, stale outputs "
          f"accepted {result['stale_outputs_accepted']}")
    emit({k: v for k, v in result.items() if k != "rounds_detail"})


if __name__ == "__main__":
    asyncio.run(main())
