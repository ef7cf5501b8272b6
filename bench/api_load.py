"""API throughput and latency through a running server (one uvicorn worker).

    .venv/bin/python bench/api_load.py [--duration 15] [--connections 32] [--port 8099]

Needs the demo data (`scripts/setup.sh setup`, or `crm db init && crm seed demo`) and
wrk (`apt-get install wrk`; a C load generator, so the 2 cores go mostly to the server).
Starts `crm serve --workers 1` on its own port, creates a brand key with no practical rate
limit, then runs two loads with 32 concurrent connections:
  GET  /api/clientes/{id}   random customers of the brand
  POST /api/pedidos         1-3 random active products for a random customer
and prints requests/s, p50 and p99 for each. Targets on a 2-core machine with the load
generator on it: GET >= 1,000 req/s, POST >= 300 req/s, p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CRM = str(ROOT / ".venv" / "bin" / "crm")

LUA_GET = """
ids = {%(ids)s}
math.randomseed(42)
request = function()
  return wrk.format("GET", "/api/clientes/" .. ids[math.random(#ids)], {["X-API-Key"] = "%(key)s"})
end
"""

LUA_POST = """
clientes = {%(clientes)s}
productos = {%(productos)s}
math.randomseed(7)
request = function()
  local items = {}
  for i = 1, math.random(3) do
    items[i] = string.format('{"producto_id": %%d, "cantidad": %%d}', productos[math.random(#productos)], math.random(3))
  end
  local body = string.format('{"cliente_id": %%d, "canal": "web", "items": [%%s]}',
                             clientes[math.random(#clientes)], table.concat(items, ","))
  return wrk.format("POST", "/api/pedidos", {["X-API-Key"] = "%(key)s", ["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("non-2xx-or-errors: %%d\\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def brand_ids(slug: str) -> tuple[list[int], list[int]]:
    import psycopg

    url = sh(CRM, "db", "url", "--brand", slug)
    with psycopg.connect(url) as conn:
        clientes = [r[0] for r in conn.execute(
            "SELECT id FROM crm.clientes WHERE deleted_at IS NULL ORDER BY random() LIMIT 2000")]
        productos = [r[0] for r in conn.execute("SELECT id FROM crm.productos WHERE activo")]
    return clientes, productos


def wait_health(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the API did not become healthy")


def parse_wrk(out: str) -> dict:
    def ms(value: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", value)
        n, unit = float(m.group(1)), m.group(2)
        return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        "p99_ms": ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
    }


def run_wrk(lua: str, port: int, duration: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        out = sh("wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", f.name,
                 f"http://127.0.0.1:{port}")
    finally:
        os.unlink(f.name)
    return parse_wrk(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--brand", default="gollos")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    clientes, productos = brand_ids(args.brand)
    if not clientes or not productos:
        raise SystemExit(f"brand {args.brand} has no demo data: run `crm seed demo` first")
    key = sh(CRM, "keys", "create", "--brand", args.brand, "--role", "staff", "--name", "bench",
             "--rate-limit", "100000000")
    log = open(ROOT / ".data" / "bench-api.log", "w")
    server = subprocess.Popen([CRM, "serve", "--port", str(args.port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_health(args.port)
        run_wrk(LUA_GET % {"ids": ",".join(map(str, clientes)), "key": key}, args.port, 3, args.connections)
        results = {
            "GET /api/clientes/{id}": run_wrk(LUA_GET % {"ids": ",".join(map(str, clientes)), "key": key},
                                             args.port, args.duration, args.connections),
            "POST /api/pedidos": run_wrk(LUA_POST % {"clientes": ",".join(map(str, clientes)),
                                                     "productos": ",".join(map(str, productos)), "key": key},
                                         args.port, args.duration, args.connections),
        }
    finally:
        server.terminate()
        server.wait(10)
        subprocess.run([CRM, "keys", "revoke", key.split("_")[1]], capture_output=True)
    print(f"API load: {args.connections} connections, {args.duration}s each, 1 worker, brand {args.brand}")
    for name, r in results.items():
        print(f"  {name:26s} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms"
              f"   ({r['requests']} requests, {r['non2xx']} non-2xx)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
