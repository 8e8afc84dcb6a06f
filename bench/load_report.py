"""What a load run measured and found, as a table and as JSON.

A run passes when every request succeeded except the runaway token's 429s, the runaway
token did get 429s, and the database and the subscribers agree with the answers. Its
goal (issue 11) is balanceChanged from commit to client in under 250 ms at p99; the
server's CPU per answered request is reported beside it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.harness import Goal, below, ms, out, percentile_ms, table
from bench.load_plan import Op, Profile
from bench.load_run import Outcome

GOAL_LIVE_P99_MS = 250.0


def latency_row(latencies_us: list[int], seconds: float) -> dict[str, Any]:
    return {
        "count": len(latencies_us),
        "per_second": len(latencies_us) / seconds,
        "p50_ms": percentile_ms(latencies_us, 0.50),
        "p95_ms": percentile_ms(latencies_us, 0.95),
        "p99_ms": percentile_ms(latencies_us, 0.99),
        "max_ms": max(latencies_us, default=0) / 1000,
    }


@dataclass
class Report:
    name: str
    duration: float
    profile: Profile
    workers: int
    ops: list[Op]
    outcome: Outcome = field(default_factory=Outcome)
    server_cpu: float = 0.0  # cores, over the run (subscribing, load, drain, settling)
    server_cpu_seconds: float = 0.0  # the same, in CPU seconds
    client_cpu: float = 0.0  # cores the harness process used over the same time
    memory: tuple[int, int, int] = (0, 0, 0)  # server RSS kB: peak sum, largest process, end
    entries: int = 0  # ledger entries of the account after the run
    problems: list[str] = field(default_factory=list)

    @property
    def errors(self) -> Counter[str]:
        return self.outcome.tally.errors

    @property
    def passed(self) -> bool:
        return not self.errors and not self.problems and self.outcome.tally.limited > 0

    @property
    def answered(self) -> int:
        """Requests answered with a success (the runaway token's 429s are not counted)."""
        return sum(map(len, self.outcome.tally.latencies_us.values()))

    def cpu_ms_per_request(self) -> float | None:
        """Server CPU over the whole run (every process) per answered request, in ms."""
        return 1000 * self.server_cpu_seconds / self.answered if self.answered else None

    def goals(self) -> list[Goal]:
        delays = [delay for s in self.outcome.subscribers for delay in s.delays_us]
        p99 = percentile_ms(delays, 0.99)
        return [below(f"{self.name}: balanceChanged commit to client p99", p99,
                      GOAL_LIVE_P99_MS, " ms")]  # fmt: skip

    def failures(self) -> list[str]:
        found = [f"{count} x {kind}" for kind, count in sorted(self.errors.items())]
        if not self.outcome.tally.limited:
            found.append("the runaway token was never rate limited")
        return found + self.problems

    def summary(self) -> dict[str, Any]:
        tally = self.outcome.tally
        return {
            "phase": self.name,
            "duration_s": self.duration,
            "multiplier": self.profile.multiplier,
            "agents": self.profile.agents,
            "workers": self.workers,
            "planned_requests": len(self.ops),
            "latency": {
                kind: latency_row(values, self.duration)
                for kind, values in sorted(tally.latencies_us.items())
            },
            "all_ok_per_second": self.answered / self.duration,
            "server_cpu_ms_per_answered_request": self.cpu_ms_per_request(),
            "runaway_rate_limited": tally.limited,
            "errors": dict(self.errors),
            "error_samples": tally.samples,
            "client_lag_ms": latency_row(tally.lag_us, self.duration),
            "subscribers": self.live_summary(),
            "server_cpu_cores": self.server_cpu,
            "client_cpu_cores": self.client_cpu,
            "server_rss_mb": {
                "peak": self.memory[0] / 1024,
                "largest_process": self.memory[1] / 1024,
                "end": self.memory[2] / 1024,
            },
            "ledger_entries": self.entries,
            "problems": self.problems,
            "passed": self.passed,
        }

    def live_summary(self) -> dict[str, Any]:
        subscribers = self.outcome.subscribers
        delays = [delay for s in subscribers for delay in s.delays_us]
        return {
            "count": len(subscribers),
            "events": sum(s.events for s in subscribers),
            "re_reads": sum(s.re_reads for s in subscribers),
            "delay": latency_row(delays, self.duration),
            "final_balance_shown": self.outcome.settled,
        }

    def print(self) -> None:
        s = self.summary()
        out(
            f"\n{self.name}: {s['planned_requests']:,} planned requests in {self.duration:g} s,"
            f" {self.profile.agents} agents at {self.profile.multiplier:g}x,"
            f" {self.workers} worker(s)"
        )
        rows = {**s["latency"], "balanceChanged (commit to client)": s["subscribers"]["delay"]}
        table(
            ["operation", "ok", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            [[kind, f"{r['count']:,}", f"{r['per_second']:.1f}", ms(r["p50_ms"]), ms(r["p95_ms"]),
              ms(r["p99_ms"]), ms(r["max_ms"])] for kind, r in rows.items()],
        )  # fmt: skip
        live = s["subscribers"]
        out(
            f"requests answered: {s['all_ok_per_second']:.1f}/s; runaway 429s:"
            f" {s['runaway_rate_limited']:,}; other errors: {sum(self.errors.values())}"
        )
        out(
            f"subscribers: {live['count']}, events {live['events']:,}, re-reads"
            f" {live['re_reads']}, all showed the final balance: {live['final_balance_shown']}"
        )
        rss = s["server_rss_mb"]
        out(
            f"server CPU per answered request: {ms(s['server_cpu_ms_per_answered_request'], 2)} ms"
            f" ({self.server_cpu_seconds:.1f} CPU s over the run, {self.answered:,} answered)"
        )
        out(
            f"server CPU {self.server_cpu:.2f} cores, RSS peak {rss['peak']:.0f} MB (largest"
            f" process {rss['largest_process']:.0f} MB); client CPU {self.client_cpu:.2f} cores,"
            f" start lag p99 {s['client_lag_ms']['p99_ms']:.1f} ms"
        )
        out(f"ledger entries checked: {self.entries:,}")
        for sample in s["error_samples"][:5]:
            out(f"  sample: {sample}")
