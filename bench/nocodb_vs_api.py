"""NocoDB vs our API on the same work: the first 100 customers of a brand.

    .venv/bin/python bench/nocodb_vs_api.py [--duration 10] [--connections 32] [--brand gollos]

Needs the demo data (`scripts/setup.sh setup`, or `crm db init && crm seed demo`), NocoDB
installed (nocodb/node_modules) and wrk. Uses the NocoDB that setup.sh runs (NOCODB_PORT)
when it answers, else starts one on a free port for the run; provisions the brand's base
(idempotent), signs in as the brand's staff user and makes an API token (deleted at the
end). Starts `crm serve --workers 1` on its own port with a brand key (revoked at the end).
Then `wrk -t2 -c32 -d10s` (after a 3 s warm-up) against:
  API     GET /api/marcas/{brand}/clientes?limite=100      customers' own fields, by id
  NocoDB  GET /api/v2/tables/{clientes}/records?limit=100&fields=...&sort=ID
                                                            the same fields, by id
  NocoDB  GET /api/v2/tables/{clientes}/records?limit=100&viewId=...
                                                            the staff view "Gestión
          Clientes": not deleted, by name, with each customer's order and interaction counts
and prints requests/s, p50 and p99 of each (wrk --timeout 10s: slow answers are counted). Everything runs on this machine (2 cores with
wrk on them too); both read the same rows through the same row-level security.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.config import settings
from bench.api_load import CRM, parse_wrk, sh, wait_health
from nocodb import provision, server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def wrk(url: str, header: str, duration: int, connections: int) -> dict:
    out = sh("wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency", "-H", header, url)
    return parse_wrk(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--brand", default="gollos")
    ap.add_argument("--api-port", type=int, default=8098)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    if not server.installed():
        raise SystemExit("NocoDB is not installed: scripts/setup.sh setup (npm install in nocodb/)")
    s = settings()
    if args.brand not in {slug for slug, _ in provision.brands(s)}:
        raise SystemExit(f"no brand {args.brand}: run `crm seed demo` first")

    procs: list[subprocess.Popen] = []
    noco_url = server.url(s)
    try:
        if not healthy(noco_url):
            port = free_port()
            noco_url = f"http://127.0.0.1:{port}"
            server.ensure_meta_database(s)
            log = open(s.data_dir / "logs" / "bench-nocodb.log", "w")
            procs.append(subprocess.Popen(server.command(), cwd=server.HERE, env=server.environment(s, port=port),
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            started = time.monotonic()
            while not healthy(noco_url):
                if procs[-1].poll() is not None or time.monotonic() - started > 120:
                    raise SystemExit("NocoDB did not start (see .data/logs/bench-nocodb.log)")
                time.sleep(0.5)
            print(f"NocoDB started for the bench in {time.monotonic() - started:.1f} s", file=sys.stderr)
        result = provision.provision(s, url=noco_url, only={args.brand}, log=lambda m: None)
        base_id = result.bases[args.brand]
        email, password = result.credentials[args.brand]
        http = httpx.Client(base_url=noco_url, timeout=60)
        jwt = http.post("/api/v1/auth/user/signin", json={"email": email, "password": password}).json()["token"]
        http.headers["xc-auth"] = jwt
        token = http.post("/api/v1/tokens", json={"description": "bench"}).json()
        tables = {t["table_name"]: t["id"] for t in
                  http.get(f"/api/v2/meta/bases/{base_id}/tables").json()["list"]}
        clientes = tables["clientes"]
        fields = ",".join(c["title"] for c in http.get(f"/api/v2/meta/tables/{clientes}").json()["columns"]
                          if c.get("column_name") and c["column_name"] != "marca_id")
        view = next(v["id"] for v in http.get(f"/api/v2/meta/tables/{clientes}/views").json()["list"]
                    if v["title"] == "Gestión Clientes")

        key = sh(CRM, "keys", "create", "--brand", args.brand, "--role", "staff", "--name", "bench",
                 "--rate-limit", "100000000")
        api_log = open(s.data_dir / "logs" / "bench-api.log", "w")
        procs.append(subprocess.Popen([CRM, "serve", "--port", str(args.api_port), "--workers", "1"],
                                      stdout=api_log, stderr=subprocess.STDOUT, start_new_session=True))
        wait_health(args.api_port)

        targets = {
            "API  /api/marcas/{m}/clientes?limite=100": (
                f"http://127.0.0.1:{args.api_port}/api/marcas/{args.brand}/clientes?limite=100",
                f"X-API-Key: {key}"),
            "NocoDB records, same fields, by id": (
                str(httpx.URL(f"{noco_url}/api/v2/tables/{clientes}/records",
                              params={"limit": 100, "fields": fields, "sort": "ID"})),
                f"xc-token: {token['token']}"),
            "NocoDB view Gestión Clientes": (
                f"{noco_url}/api/v2/tables/{clientes}/records?limit=100&viewId={view}",
                f"xc-token: {token['token']}"),
        }
        for url, header in targets.values():  # every answer is a page of 100 customers
            r = httpx.get(url, headers=dict([header.split(": ", 1)]), timeout=60)
            r.raise_for_status()
            rows = r.json().get("list") or r.json().get("datos") or r.json().get("items")
            assert rows is None or len(rows) == 100, (url, len(rows))
        results = {}
        for name, (url, header) in targets.items():
            wrk(url, header, 3, args.connections)  # warm-up
            results[name] = wrk(url, header, args.duration, args.connections)
        http.delete(f"/api/v1/tokens/{token['id']}")
        subprocess.run([CRM, "keys", "revoke", key.split("_")[1]], capture_output=True, check=False)
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    print(f"NocoDB vs API: first 100 customers of {args.brand}, {args.connections} connections, "
          f"{args.duration}s each, wrk -t2 (API: 1 uvicorn worker; NocoDB: 1 Node process)")
    for name, r in results.items():
        print(f"  {name:42s} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:7.1f} ms   p99 {r['p99_ms']:7.1f} ms"
              f"   ({r['requests']} requests, {r['non2xx']} non-2xx)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
