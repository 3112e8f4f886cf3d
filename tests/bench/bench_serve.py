"""Time `orchestrator serve` on a state of 100,000 attempts over 30 days: /metrics, and /healthz from the cache.

The server is the real command in its own process. /metrics is scraped one request at a time
(the first scrape, which reads every settled attempt once, is shown apart). /healthz is asked,
once the cache holds a document, by 50 concurrent clients in 5 client processes, each on its own
keep-alive connection: first each polling every 100 ms (500 requests/s, the target's figure),
then each asking again as soon as answered (the server's throughput, shown for reference).

    python tests/bench/bench_serve.py [--attempts 100000] [--days 30] [--scrapes 30] [--clients 50] [--requests 40]

Targets: /metrics median under 100 ms; /healthz from the cache p99 under 10 ms at 50 clients.
"""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import bench_env
from tests.support.seeded_state import seed

METRICS_TARGET = 0.100
HEALTHZ_P99_TARGET = 0.010


def timed_get(conn: http.client.HTTPConnection, path: str) -> tuple[float, int]:
    """One GET on a kept-alive connection: (seconds to the whole body, status)."""
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return time.perf_counter() - started, response.status


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _clients(port: int, count: int, requests: int, interval: float | None, start: float) -> list[float]:
    """`count` clients in threads of this process, each on its own kept-alive connection."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        mine = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        timed_get(mine, "/healthz")  # connected before the clock starts
        time.sleep(max(0.0, start - time.time()))
        if interval:
            # Spread over the interval, as independent pollers are.
            time.sleep(interval * index / count)
        times = []
        for _ in range(requests):
            began = time.perf_counter()
            times.append(timed_get(mine, "/healthz")[0])
            if interval:
                time.sleep(max(0.0, interval - (time.perf_counter() - began)))
        mine.close()
        with lock:
            latencies.extend(times)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def load(
    port: int, clients: int, requests: int, interval: float | None, processes: int
) -> tuple[list[float], float]:
    """The latencies of `clients` concurrent clients spread over `processes` processes, and the wall time."""
    from concurrent.futures import ProcessPoolExecutor

    start = time.time() + 1.0
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        began = time.perf_counter()
        futures = [pool.submit(_clients, port, share, requests, interval, start) for share in shares if share]
        latencies = [t for future in futures for t in future.result()]
    return latencies, time.perf_counter() - began - 1.0


def main() -> int:
    """Seed the state, start the server, measure, print the figures against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40, help="/healthz requests per client")
    parser.add_argument(
        "--interval", type=float, default=0.1, help="seconds between a client's requests (paced run)"
    )
    parser.add_argument("--processes", type=int, default=5, help="client processes the clients share")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "pytest.ini").write_text("[pytest]\n")
        # A long cache: every timed /healthz is answered from it.
        (root / "orchestrator.yaml").write_text("serve:\n  health_cache: 3600\n")
        started = time.perf_counter()
        seed(root / ".orchestrator", options.attempts, days=options.days)
        print(
            f"seeded {options.attempts} attempts over {options.days:g} days in {time.perf_counter() - started:.1f}s"
        )
        env = {**bench_env(), "ORCHESTRATOR_SANDBOX": "bench-absent-sandbox"}
        server = subprocess.Popen(
            [sys.executable, "-m", "pytest_orchestrator", "serve", "--port", "0"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if found is None:
                raise SystemExit(f"serve did not start: {line}{server.communicate(timeout=10)}")
            port = int(found[1])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            first, status = timed_get(conn, "/metrics")
            assert status == 200, status
            scrapes = [timed_get(conn, "/metrics")[0] for _ in range(options.scrapes)]
            warm, status = timed_get(conn, "/healthz")  # runs the health checks once, fills the cache
            conn.close()

            saturated, wall = load(port, options.clients, options.requests, None, options.processes)
            paced, _ = load(port, options.clients, options.requests, options.interval, options.processes)
        finally:
            server.terminate()
            server.wait(timeout=10)
    metrics_median = statistics.median(scrapes)
    p50, p99 = percentile(paced, 0.50), percentile(paced, 0.99)
    rate = options.clients / options.interval
    print(
        f"/metrics: first scrape {first * 1000:.1f} ms; median of {len(scrapes)} {metrics_median * 1000:.1f} ms "
        f"(max {max(scrapes) * 1000:.1f} ms), target < {METRICS_TARGET * 1000:.0f} ms"
    )
    print(f"/healthz: the checks' run {warm:.2f}s (status {status}), then from the cache:")
    print(
        f"  {options.clients} clients, each asking every {options.interval * 1000:.0f} ms "
        f"({rate:.0f} requests/s): p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
        f"target p99 < {HEALTHZ_P99_TARGET * 1000:.0f} ms"
    )
    print(
        f"  {options.clients} clients, each asking again as soon as answered: "
        f"{len(saturated) / wall:.0f} requests/s, p50 {percentile(saturated, 0.5) * 1000:.2f} ms, "
        f"p99 {percentile(saturated, 0.99) * 1000:.2f} ms (a closed queue: latency = clients / throughput)"
    )
    ok = metrics_median < METRICS_TARGET and p99 < HEALTHZ_P99_TARGET
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
