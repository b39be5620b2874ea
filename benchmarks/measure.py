"""The measurements: one scenario on one target (a wrk warm-up, then a measured run with the CPU
time of the process trees and the workers' memory), and the sustained check (the app alone at a
fixed rate of reads and of writes at once).
"""

from __future__ import annotations

from typing import Any

from benchmarks.processes import CpuMeter, workers_memory_mib
from benchmarks.report import Measurement, per_request
from benchmarks.wrk import Wrk, socket_errors
from bookstore.testing import HttpServer

__all__ = ["SUSTAINED_CONNECTIONS", "SUSTAINED_RATE", "SUSTAINED_TOLERANCE", "measure", "sustained_check"]

SUSTAINED_RATE = 1000  # requests/s, for reads and for writes at the same time
SUSTAINED_CONNECTIONS = 32  # per wrk process: one request every 32 ms per connection at 1000/s
SUSTAINED_TOLERANCE = 0.95  # achieved / target rate that still counts as sustained


def measure(
    wrk: Wrk,
    server: HttpServer,
    target: str,
    scenario: str,
    meter_roots: dict[str, int | None],
    *,
    warmup: int,
    duration: int,
    connections: int,
) -> Measurement:
    """Warm up, then measure ``scenario`` on ``server``, with the CPU time of ``meter_roots``' trees."""
    label = f"{scenario}-{target}"
    warm = wrk.run(scenario, server.base_url, duration=warmup, connections=connections, label=label + "-warmup")
    meter = CpuMeter({"server": server.pid, **meter_roots})
    meter.start()
    result = wrk.run(scenario, server.base_url, duration=duration, connections=connections, label=label)
    cpu = meter.stop()
    requests = int(result["requests"])
    return Measurement(
        scenario=scenario,
        target=target,
        rps=float(result["rps"]),
        p50_ms=float(result["p50_ms"]),
        p99_ms=float(result["p99_ms"]),
        p999_ms=float(result["p999_ms"]),
        requests=requests,
        non2xx=int(result["non2xx"]),
        socket_errors=socket_errors(result),
        statuses=result.get("statuses", {}),
        first_error=result.get("first_error", "") or warm.get("first_error", ""),
        warmup_non2xx=int(warm["non2xx"]),
        server_cpu_us_per_request=per_request(cpu["server"], requests),
        postgres_cpu_us_per_request=per_request(cpu.get("postgres"), requests),
        redis_cpu_us_per_request=per_request(cpu.get("redis"), requests),
        worker_peak_rss_mib=workers_memory_mib(server.pid, "VmHWM"),
        worker_rss_mib=workers_memory_mib(server.pid, "VmRSS"),
    )


def sustained_check(wrk: Wrk, app: HttpServer, seconds: int, meter_roots: dict[str, int | None]) -> dict[str, Any]:
    """The app alone under SUSTAINED_RATE reads/s and SUSTAINED_RATE writes/s at once, for ``seconds``."""
    meter = CpuMeter({"server": app.pid, **meter_roots})
    meter.start()
    streams = {"reads (get_book)": "get_book", "writes (create_book)": "create_book"}
    running = {
        name: wrk.start(
            scenario, app.base_url, duration=seconds, connections=SUSTAINED_CONNECTIONS, rate=SUSTAINED_RATE
        )
        for name, scenario in streams.items()
    }
    results: dict[str, Any] = {}
    try:
        for name, process in running.items():
            results[name] = wrk.finish(process, seconds, f"sustained-{streams[name]}")
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    cpu = meter.stop()
    total = sum(int(result["requests"]) for result in results.values())
    report: dict[str, Any] = {
        "seconds": seconds,
        "target_rps_each": SUSTAINED_RATE,
        "connections_each": SUSTAINED_CONNECTIONS,
        "server_cpu_us_per_request": per_request(cpu["server"], total),
        "server_cpu_cores": round(cpu["server"] / seconds, 2) if cpu["server"] is not None else None,
        "streams": {},
    }
    for name, result in results.items():
        errors = int(result["non2xx"]) + socket_errors(result)
        report["streams"][name] = {
            "achieved_rps": result["rps"],
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "p999_ms": result["p999_ms"],
            "requests": result["requests"],
            "non2xx": result["non2xx"],
            "socket_errors": socket_errors(result),
            "statuses": result.get("statuses", {}),
            "first_error": result.get("first_error", ""),
            "sustained": errors == 0 and float(result["rps"]) >= SUSTAINED_TOLERANCE * SUSTAINED_RATE,
        }
    return report
