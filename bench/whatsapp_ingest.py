"""WhatsApp ingest through a running server: throughput, latency, and exactly-once counts.

    .venv/bin/python bench/whatsapp_ingest.py [--deliveries 20000] [--customers 2000]
                                              [--concurrency 32] [--port 8096] [--phase both]
                                              [--api-workers 1]

Needs the demo data (gollos' Meta channel and catalog). Starts `crm serve --workers 1` on
its own port with a bench app secret, then sends deliveries signed exactly as Meta signs
them (X-Hub-Signature-256), 10% of them redelivered, from `--concurrency` senders:

  normal: messages/s committed, p50/p99 latency, CPU milliseconds per message of the API,
          PostgreSQL (when local), the worker and this client, and the count check: inbound
          interactions = unique messages, orders = order messages (those the parser reads
          as a complete order: what the flow must turn into exactly one order each);
  crash:  the same with the API process killed (SIGKILL) and restarted in the middle;
          every delivery without a 200 is sent again until it gets one. Nothing may be
          lost or doubled.

Before the first delivery it flushes the page cache (os.sync), so the kernel's delayed
write-back of what starting the stack wrote does not stall commits mid-run.

Targets here: >= 500 messages/s, p99 <= 100 ms. Meta allows one business number 1,000
messages/s inbound and outbound together.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api import roles  # noqa: E402
from api.config import settings  # noqa: E402
from whatsapp.intencion import intencion  # noqa: E402
from whatsapp.pedido_texto import Catalogo, Producto  # noqa: E402

CRM = str(ROOT / ".venv" / "bin" / "crm")
SECRET = "bench-app-secret"
TEXTOS = {
    "pedido": ["2 cuartos de pollo", "quiero un pollo entero y una coca lata", "1/4 pollo con papas medianas",
               "hola, me mandan 2 pollos enteros porfa", "un combo individual", "3 alitas", "medio pollo",
               "un cuarto pierna y una salsa", "2 pollos enteros", "quiero 4 cuartos de pollo"],
    "otro": ["hola", "menú", "estado de mi pedido", "sí", "buenas tardes", "¿hasta qué hora atienden?"],
}


def entrega(pnid: str, telefono: str, wamid: str, cuerpo: str) -> bytes:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "56229380001", "phone_number_id": pnid},
             "contacts": [{"profile": {"name": "Cliente Bench"}, "wa_id": telefono.lstrip("+")}],
             "messages": [{"from": telefono.lstrip("+"), "id": wamid, "timestamp": str(int(time.time())),
                           "type": "text", "text": {"body": cuerpo}}]}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "WABA", "changes": [{"value": value, "field": "messages"}]}]}).encode()


def plan(run: str, pnid: str, deliveries: int, customers: int, seed: int) -> tuple[list, dict, list]:
    """Deliveries (wamid, text, body, signature); 10% are redeliveries of earlier ones."""
    rnd = random.Random(seed)
    bloque = int(run[:-1]) % 100 * 10_000  # each run its own customers: counts never mix runs
    phones = [f"+56998{(bloque + i) % 10**6:06d}" for i in range(customers)]
    unique = int(deliveries * 0.9)
    msgs = []
    for n in range(unique):
        kind = "pedido" if rnd.random() < 0.5 else "otro"
        texto = rnd.choice(TEXTOS[kind])
        wamid = f"wamid.bench{run}.{n}"
        body = entrega(pnid, rnd.choice(phones), wamid, texto)
        msgs.append((wamid, texto, body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()))
    out = list(msgs)
    for _ in range(deliveries - unique):  # a redelivery lands after its original
        original = rnd.randrange(unique)
        out.insert(rnd.randrange(original + 1, len(out) + 1), msgs[original])
    return out, {m[0]: m[1] for m in msgs}, phones


def expected_orders(texts: dict, owner_url: str) -> int:
    with psycopg.connect(owner_url) as conn:
        rows = conn.execute("SELECT p.id, p.nombre, p.alias, p.precio, p.categoria FROM crm.productos p "
                            "JOIN crm.marcas m ON m.id = p.marca_id WHERE m.slug = 'gollos' AND p.activo").fetchall()
    catalogo = Catalogo(Producto(r[0], r[1], tuple(r[2]), r[3], r[4]) for r in rows)
    n = 0
    for texto in texts.values():
        if intencion(texto) == "otro":
            r = catalogo.interpretar(texto)
            n += bool(r.lineas) and not r.ambiguos
    return n


def counts(owner_url: str, run: str, phones: list[str], since: float) -> tuple[int, int]:
    with psycopg.connect(owner_url) as conn:
        inbound = conn.execute("SELECT count(*) FROM crm.interacciones WHERE id_externo LIKE %s",
                               (f"wamid.bench{run}.%",)).fetchone()[0]
        orders = conn.execute(
            "SELECT count(*) FROM crm.pedidos p JOIN crm.clientes c ON c.marca_id = p.marca_id "
            "AND c.id = p.cliente_id WHERE c.telefono = ANY(%s) AND p.canal = 'whatsapp' "
            "AND p.created_at >= to_timestamp(%s)", (phones, since)).fetchone()[0]
    return inbound, orders


def outbox_drain(owner_url: str, phones: list[str], since: float, limit: float = 300.0) -> tuple[int, int, float | None]:
    """Wait for the outbox worker (`crm worker`, started by setup.sh) to send the replies to
    these customers: (replies, still queued, seconds it took after the last delivery)."""
    t0 = time.monotonic()
    query = ("SELECT count(*), count(*) FILTER (WHERE s.estado = 'en_cola') FROM crm.salientes s "
             "JOIN crm.clientes c ON c.marca_id = s.marca_id AND c.id = s.cliente_id "
             "WHERE c.telefono = ANY(%s) AND s.created_at >= to_timestamp(%s)")
    with psycopg.connect(owner_url, autocommit=True) as conn:
        while True:
            total, queued = conn.execute(query, (phones, since)).fetchone()
            if queued == 0:
                return total, 0, time.monotonic() - t0
            if time.monotonic() - t0 > limit:
                return total, queued, None
            time.sleep(0.2)


def start_server(port: int, workers: int = 1) -> subprocess.Popen:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is in use: another server would answer this bench")
    env = {**os.environ, "WHATSAPP_APP_SECRET": SECRET, "CRM_LOG_LEVEL": "warning"}
    log = open(ROOT / ".data" / "bench-whatsapp.log", "a")
    proc = subprocess.Popen([CRM, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the API did not start")


class Cpu:
    """CPU seconds spent meanwhile by the API processes, PostgreSQL (when it runs on this
    machine), the outbox worker and this bench, read from /proc every half second (server
    backends come and go with their connections). Linux only; elsewhere it reports nothing.
    On a machine whose CPUs are shared and noisy, CPU per message moves less than messages/s."""

    def __init__(self, api_groups: list[int]) -> None:
        self.api_groups = api_groups  # process groups of the API (it is restarted in `crash`)
        self.first: dict = {}
        self.last: dict = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _snapshot(self) -> dict:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")
            except OSError:
                continue
            comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()
            if int(pid) == os.getpid():
                who = "bench"
            elif int(fields[2]) in self.api_groups:
                who = "API"
            elif comm == "postgres":
                who = "PostgreSQL"
            elif b"crm worker" in cmd:
                who = "worker"
            else:
                continue
            out[(pid, fields[19])] = (who, (int(fields[11]) + int(fields[12])) / tick)
        return out

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            self.last.update(self._snapshot())

    def __enter__(self) -> Cpu:
        if os.path.isdir("/proc/self"):
            self.first = self._snapshot()
            self.last = dict(self.first)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.thread.is_alive():
            self.stop.set()
            self.thread.join()
            self.last.update(self._snapshot())

    def per_message(self, messages: int) -> str:
        spent: dict[str, float] = {}
        for key, (who, seconds) in self.last.items():
            spent[who] = spent.get(who, 0.0) + seconds - self.first.get(key, (who, 0.0))[1]
        return ", ".join(f"{who} {1000 * spent[who] / messages:.2f}"
                         for who in ("API", "PostgreSQL", "worker", "bench") if who in spent)


class Conexion:
    """A minimal keep-alive HTTP/1.1 client over asyncio streams. httpx spends more CPU per
    request than the server does on a message, and this machine has 2 cores for both."""

    def __init__(self, port: int) -> None:
        self.port, self.reader, self.writer = port, None, None

    async def post(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            largo = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    largo = int(line[15:])
            await self.reader.readexactly(largo)
            return status
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise ConnectionError("no answer") from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def request_bytes(body: bytes, signature: str) -> bytes:
    return (b"POST /api/webhooks/whatsapp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nX-Hub-Signature-256: " + signature.encode() +
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def send_all(port: int, deliveries: list, concurrency: int, crash_at: float | None,
                   api_workers: int = 1) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for wamid, _, body, sig in deliveries:
        queue.put_nowait(request_bytes(body, sig))
    latencies, failures, done = [], 0, 0
    state = {"proc": start_server(port, api_workers), "crashed": False, "restarting": asyncio.Event()}
    api_groups = [state["proc"].pid]
    state["restarting"].set()
    total = len(deliveries)

    async def sender():
        nonlocal failures, done
        conn = Conexion(port)
        while True:
            try:
                request = queue.get_nowait()
            except asyncio.QueueEmpty:
                conn.close()
                return
            await state["restarting"].wait()
            t0 = time.perf_counter()
            try:
                ok = await conn.post(request) == 200
            except ConnectionError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
                done += 1
                if crash_at is not None and not state["crashed"] and done >= crash_at * total:
                    state["crashed"] = True
                    state["restarting"].clear()
                    os.killpg(state["proc"].pid, signal.SIGKILL)  # the server and its workers
                    state["proc"].wait()
                    state["proc"] = await asyncio.to_thread(start_server, port, api_workers)
                    api_groups.append(state["proc"].pid)
                    state["restarting"].set()
            else:
                failures += 1
                queue.put_nowait(request)  # no 200: send it again
                await asyncio.sleep(0.05)

    # What starting the stack and this server wrote (logs, the summaries, compiled modules:
    # a megabyte or two) stays dirty in the page cache until the kernel writes it back, 30 s
    # later (vm.dirty_expire_centisecs): on a slow disk that write-back holds every commit's
    # WAL flush for 150-200 ms, in the middle of the run. Flushed now, it is not measured.
    os.sync()
    t0 = time.perf_counter()
    with Cpu(api_groups) as cpu:  # from the first delivery (the API's start-up is not counted)
        await asyncio.gather(*[sender() for _ in range(concurrency)])
    elapsed = time.perf_counter() - t0
    os.killpg(state["proc"].pid, signal.SIGTERM)
    state["proc"].wait(10)
    latencies.sort()
    return {"elapsed": elapsed, "cpu": cpu, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1], "resent": failures}


def run_phase(name: str, args, pnid: str, owner_url: str, crash_at: float | None) -> None:
    run = f"{int(time.time())}{name[0]}"
    deliveries, texts, phones = plan(run, pnid, args.deliveries, args.customers, seed=1 if crash_at is None else 2)
    expected = expected_orders(texts, owner_url)
    since = time.time() - 1
    r = asyncio.run(send_all(args.port, deliveries, args.concurrency, crash_at, args.api_workers))
    inbound, orders = counts(owner_url, run, phones, since)
    replies, queued, drain = outbox_drain(owner_url, phones, since)
    unique = len(texts)
    print(f"{name}: {len(deliveries)} deliveries ({unique} unique, {len(deliveries) - unique} redelivered), "
          f"{args.concurrency} senders, {args.api_workers} API process(es), 1 outbox worker")
    print(f"  {unique / r['elapsed']:7.0f} messages/s committed   p50 {r['p50_ms']:6.1f} ms   "
          f"p99 {r['p99_ms']:6.1f} ms   ({r['elapsed']:.1f} s, {r['resent']} sent again after no 200)")
    if r["cpu"].last:
        print(f"  CPU ms per message, while sending: {r['cpu'].per_message(unique)}")
    print(f"  count check: interactions {inbound} = unique messages {unique}: {inbound == unique};  "
          f"orders {orders} = order messages {expected}: {orders == expected}")
    print(f"  outbox: {replies} replies; " + (f"all sent {drain:.1f} s after the last delivery" if drain is not None
          else f"{queued} still queued after 300 s (is `crm worker` running? scripts/setup.sh start)"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deliveries", type=int, default=20_000)
    ap.add_argument("--customers", type=int, default=2_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--port", type=int, default=8096)
    ap.add_argument("--phase", choices=["normal", "crash", "both"], default="both")
    ap.add_argument("--api-workers", type=int, default=1, help="API processes (crm serve --workers)")
    args = ap.parse_args()
    s = settings()
    owner_url = roles.role_url(roles.OWNER, s)
    with psycopg.connect(owner_url) as conn:
        row = conn.execute("SELECT c.identificador FROM crm.canales c JOIN crm.marcas m ON m.id = c.marca_id "
                           "WHERE m.slug = 'gollos' AND c.proveedor = 'meta' AND c.activo").fetchone()
    if row is None:
        raise SystemExit("gollos has no Meta channel: run `crm seed demo` (scripts/setup.sh setup) first")
    if args.phase in ("normal", "both"):
        run_phase("normal", args, row[0], owner_url, None)
    if args.phase in ("crash", "both"):
        run_phase("crash", args, row[0], owner_url, 0.4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
