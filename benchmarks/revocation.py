"""Revocation latency and gateway connection capacity of one portal process.

Starts a real portal (daphne on a scratch PostgreSQL database + Redis channel layer), opens N
simulated gateway websockets from this process (``websockets`` client, protocol v1 with a
heartbeat every 10 s), then measures:

  * revocation: ``delete_policy`` (service call in this process: transaction, commit, on-commit
    handler, channel-layer push) until ``reject_access`` for the revoked authorization arrives at
    the gateway that holds it; p50/p99 over ``--trials`` policies. Goal p99 < 300 ms.
  * capacity: how many gateway connections one daphne process holds with heartbeats (all must
    stay open and get every heartbeat reply during ``--hold`` seconds), and the daphne process's
    RSS growth per connection (VmRSS before/after).
  * real agent: while the simulated gateways stay connected, one real ``firezone-gateway
    --portal-url`` agent (in a network namespace, in its own site, connected to the same daphne
    process through its unix socket; benchmarks/_agent_lab.py) holds a static device's peer and a
    dynamic client's flow, both granted by one policy. Per trial (``--agent-trials``) the policy is
    created, the agent is waited for until it installed both, then ``delete_policy`` is timed
    until the agent has *applied* ``reject_access`` (flow removed) and ``remove_static_peer``
    (peer removed): the agent logs each portal message right after applying it, with its own
    timestamp. Needs root and /dev/net/tun; otherwise (or with ``--no-agent``) this part is
    skipped with a note and ``"real_agent": null``.

The scratch database (``fz_bench_revocation_<pid>``) and the Redis keys are removed at the end.
The last line printed is one JSON object.

    .venv/bin/python benchmarks/revocation.py [--connections 1000] [--trials 100] [--hold 25]
        [--agent-trials 30 | --no-agent]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._scratch_db import (  # noqa: E402
    BENCH_SECRET_KEY,
    create_database,
    drop_database,
    setup_django,
)

if TYPE_CHECKING:
    from benchmarks._agent_lab import AgentProcess


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _client_device(account: Any, user: Any, name: str) -> Any:
    """A dynamic client device of ``user`` (as the client API would register it)."""
    from gateways import services as gateways
    from gateways.models import ClientDevice

    addresses = gateways.allocate_tunnel_address(account)
    return ClientDevice.objects.create(
        account=account,
        actor=user,
        external_id=name,
        name=name,
        public_key=gateways.generate_key_pair()[1],
        address=addresses.slot,
        ipv4=addresses.ipv4,
        ipv6=addresses.ipv6,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(p50, p99, max) in the benchmark's rounding; p99 of fewer than 100 values is the max."""
    if not values:
        return None, None, None
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return round(statistics.median(ordered), 1), round(p99, 1), round(ordered[-1], 1)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM takes the same way out as Ctrl-C, so every finally block (namespace, agent,
    # daphne, scratch database) runs.
    raise KeyboardInterrupt


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Agent:
    external_id: str
    public_key: str
    ws: Any = None
    gateway_id: str = ""
    heartbeats_sent: int = 0
    replies: int = 0
    closed: str = ""
    waiting: dict[str, asyncio.Future[float]] = field(default_factory=dict)


async def run_agent(agent: Agent, url: str, secret: str, ready: asyncio.Semaphore) -> None:
    from websockets.asyncio.client import connect

    query = urlencode(
        {
            "external_id": agent.external_id,
            "name": agent.external_id,
            "public_key": agent.public_key,
            "version": "bench",
            "protocol": "1",
        }
    )
    try:
        async with ready:
            agent.ws = await connect(
                f"{url}?{query}",
                additional_headers={"Authorization": f"Bearer {secret}"},
                open_timeout=120,
                ping_interval=None,
                max_size=16 * 1024 * 1024,
            )
            init = json.loads(await agent.ws.recv())
            assert init["type"] == "init", init
            agent.gateway_id = init["gateway_id"]
        loop = asyncio.get_running_loop()
        heartbeat = loop.create_task(_heartbeats(agent))
        try:
            async for frame in agent.ws:
                message = json.loads(frame)
                if message["type"] == "heartbeat_reply":
                    agent.replies += 1
                elif message["type"] == "reject_access":
                    now = time.perf_counter()
                    for auth_id in message["authorization_ids"]:
                        fut = agent.waiting.pop(auth_id, None)
                        if fut is not None and not fut.done():
                            fut.set_result(now)
        finally:
            heartbeat.cancel()
        agent.closed = f"closed {agent.ws.close_code}"
    except Exception as exc:  # recorded, reported as a dropped connection
        agent.closed = f"{type(exc).__name__}: {exc}"


async def _heartbeats(agent: Agent) -> None:
    # Spread the agents over the interval like real ones.
    await asyncio.sleep(random.uniform(0, 10))
    while True:
        await agent.ws.send('{"type":"heartbeat"}')
        agent.heartbeats_sent += 1
        await asyncio.sleep(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--hold", type=float, default=25.0, help="seconds to hold all sockets")
    parser.add_argument(
        "--agent-trials", type=int, default=30, help="policy deletes seen by the real agent"
    )
    parser.add_argument("--no-agent", action="store_true", help="skip the real gateway agent")
    parser.add_argument(
        "--redis-socket-timeout",
        type=float,
        default=60.0,
        help="socket_timeout added to REDIS_URL for the portal (0: leave the URL alone)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _raise_interrupt)

    from benchmarks import _agent_lab

    skip_reason = "--no-agent" if args.no_agent else _agent_lab.unavailable()
    agent: AgentProcess | None = None
    socket_path = Path(f"/tmp/fzbench{os.getpid()}.sock")
    if skip_reason:
        log(f"NOTE: the real gateway agent part is skipped ({skip_reason}): real_agent is null")
    else:
        agent = _agent_lab.AgentProcess(socket_path, external_id=f"bench-agent-{os.getpid()}")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * args.connections + 512))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    scratch = f"fz_bench_revocation_{os.getpid()}"
    prefix = f"fzbench{os.getpid()}"
    database_url = create_database(args.base_url, scratch)
    redis_url = args.redis_url
    if args.redis_socket_timeout and "socket_timeout" not in redis_url:
        # redis-py 8 defaults socket_timeout to 5 s, which aborts channels_redis' blocking
        # BZPOPMIN (also 5 s) and kills the consumer waiting on it (1011) every few seconds
        # (django/channels_redis#422). The portal settings need the same option; see the report.
        sep = "&" if "?" in redis_url else "?"
        redis_url = f"{redis_url}{sep}socket_timeout={args.redis_socket_timeout:g}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "600",
        "REDIS_URL": redis_url,
        "FZ_CHANNEL_PREFIX": prefix,
        "SECRET_KEY": BENCH_SECRET_KEY,
        "FZ_TESTING": "1",
        "DJANGO_SETTINGS_MODULE": "firezone_site.settings",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    daphne: subprocess.Popen[bytes] | None = None
    try:
        setup_django(database_url)
        # No Celery worker here: the static-device recomputation a policy creation queues
        # (gateways.sync_account_static_devices) runs inline in this process, after the commit.
        from gateways import tasks as gateway_tasks

        sync_task = gateway_tasks.sync_account_static_devices
        setattr(sync_task, "delay", lambda account_id: sync_task(account_id))  # noqa: B010
        port = _free_port()
        # The real agent reaches the same process through a unix socket (see _agent_lab).
        unix = ["-u", str(socket_path)] if agent is not None else []
        daphne_log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as daphne
            prefix="fz-bench-daphne-", suffix=".log", delete=False
        )
        daphne = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                *unix,
                "firezone_site.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=daphne_log,
            start_new_session=True,
        )
        result = asyncio.run(bench(args, port, daphne.pid, agent, skip_reason))
        errors = [
            line
            for line in Path(daphne_log.name).read_text(errors="replace").splitlines()
            if "Error" in line or "Traceback" in line
        ]
        result["server_errors"] = len(errors)
        if errors:
            log(f"daphne log {daphne_log.name}: {len(errors)} error lines, first: {errors[0]}")
        else:
            os.unlink(daphne_log.name)
        print(json.dumps(result))
        if result.get("real_agent_error"):
            raise SystemExit(1)
    finally:
        if agent is not None:
            agent.close()
        if daphne is not None:
            os.killpg(daphne.pid, signal.SIGTERM)
            try:
                daphne.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(daphne.pid, signal.SIGKILL)
                daphne.wait()
        drop_database(args.base_url, scratch)
        _delete_redis_keys(args.redis_url, prefix)
        socket_path.unlink(missing_ok=True)


def _delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("daphne did not start")


async def bench(
    args: argparse.Namespace,
    port: int,
    daphne_pid: int,
    agent: AgentProcess | None,
    skip_reason: str | None,
) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from accounts import services as accounts
    from gateways import services as gateways

    def setup() -> tuple[Any, Any, str, Any, str]:
        account = accounts.create_account(name="Bench", slug="bench")
        site = gateways.create_site(account, name="Site")
        agent_site = gateways.create_site(account, name="Agent site")
        return (
            account,
            site,
            gateways.issue_gateway_token(site).secret,
            agent_site,
            gateways.issue_gateway_token(agent_site).secret,
        )

    account, site, secret, agent_site, agent_token = await sync_to_async(setup)()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _wait_port, port)
    url = f"ws://127.0.0.1:{port}/gateway/websocket"

    # The real agent connects first, so its connection is part of the RSS baseline.
    agent_error = ""
    if agent is not None:
        t_agent = time.perf_counter()
        try:
            await loop.run_in_executor(None, agent.start, agent_token)
            log(f"real agent up in {time.perf_counter() - t_agent:.1f} s ({agent.external_id})")
        except Exception as exc:
            agent_error = f"agent start: {type(exc).__name__}: {exc}"
            log(f"ERROR: the real gateway agent did not start: {exc}\n{agent.tail()}")

    # Warm-up connection: imports and first queries happen before the RSS baseline.
    keys = [gateways.generate_key_pair()[1] for _ in range(args.connections + 1)]
    warm = Agent("warm-up", keys[-1])
    warm_task = asyncio.create_task(run_agent(warm, url, secret, asyncio.Semaphore(1)))
    while not warm.gateway_id and not warm.closed:
        await asyncio.sleep(0.05)
    if warm.closed:
        raise RuntimeError(f"warm-up connection failed: {warm.closed}")
    await asyncio.sleep(1)
    rss_before = _rss_kb(daphne_pid)

    agents = [Agent(f"gw-{i:05d}", keys[i]) for i in range(args.connections)]
    ready = asyncio.Semaphore(64)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(run_agent(a, url, secret, ready)) for a in agents]
    while sum(1 for a in agents if a.gateway_id or a.closed) < len(agents):
        await asyncio.sleep(0.2)
    connect_s = time.perf_counter() - t0
    failed = [a for a in agents if a.closed]
    log(f"connected {len(agents) - len(failed)}/{len(agents)} in {connect_s:.1f} s")
    if failed:
        log(f"first failure: {failed[0].closed}")

    log(f"holding for {args.hold:.0f} s with heartbeats ...")
    await asyncio.sleep(args.hold)
    rss_after = _rss_kb(daphne_pid)
    open_agents = [a for a in agents if a.gateway_id and not a.closed]
    missing_replies = sum(max(0, a.heartbeats_sent - a.replies - 1) for a in open_agents)

    # Trials: one policy + one authorization per trial, each held by a random gateway.
    def make_trials() -> list[tuple[Any, str, str]]:
        from gateways.models import Authorization
        from policies import services as policies

        user = accounts.create_actor(account, email="bob@bench.test", name="Bob", type="user")
        group = accounts.create_group(account, name="Engineering")
        accounts.add_member(group, user)
        device = _client_device(account, user, "laptop")
        trials = []
        for i in range(args.trials):
            res = policies.create_resource(
                account,
                name=f"r{i}",
                kind="cidr",
                address=f"10.{i // 250}.{i % 250}.0/24",
                site=site,
            )
            policy = policies.create_policy(account, group=group, resource=res)
            holder = random.choice(open_agents)
            auth = Authorization.objects.create(
                account=account,
                actor=user,
                device=device,
                resource=res,
                policy=policy,
                gateway_id=uuid.UUID(holder.gateway_id),
            )
            trials.append((policy, holder.external_id, str(auth.pk)))
        return trials

    trials = await sync_to_async(make_trials)()
    by_id = {a.external_id: a for a in open_agents}
    from policies import services as policies

    latencies: list[float] = []
    lost = 0
    for policy, holder_id, auth_id in trials:
        holder = by_id[holder_id]
        fut: asyncio.Future[float] = loop.create_future()
        holder.waiting[auth_id] = fut
        start = time.perf_counter()
        await loop.run_in_executor(None, policies.delete_policy, policy)
        try:
            arrived = await asyncio.wait_for(fut, timeout=5)
        except TimeoutError:
            lost += 1
            continue
        latencies.append((arrived - start) * 1000)
        await asyncio.sleep(0.02)

    # The real agent's trials, while all simulated gateways stay connected.
    figures: dict[str, Any] | None = None
    if agent is not None and not agent_error:
        stop = threading.Event()
        log(f"real agent: {args.agent_trials} policy deletes ...")
        try:
            figures = await loop.run_in_executor(
                None, real_agent_trials, account, agent_site, agent, args.agent_trials, stop
            )
        except asyncio.CancelledError:
            stop.set()
            raise
        except Exception as exc:
            agent_error = f"agent trials: {type(exc).__name__}: {exc}"
            log(f"ERROR: real agent trials failed: {exc}\n{agent.tail()}")

    still_open = sum(1 for a in open_agents if not a.closed)
    for a in [*agents, warm]:
        if a.ws is not None:
            await a.ws.close()
    for t in [*tasks, warm_task]:
        t.cancel()
    await asyncio.gather(*tasks, warm_task, return_exceptions=True)

    slowest = sorted(enumerate(latencies), key=lambda x: -x[1])[:3]
    log("slowest trials (index, ms): " + ", ".join(f"({i}, {ms:.0f})" for i, ms in slowest))
    p50, p99, worst = _percentiles(latencies)

    rss_mb = round(rss_after / 1024, 1)
    held = len(open_agents)
    result: dict[str, Any] = {
        "revocation_p50_ms": p50,
        "revocation_p99_ms": p99,
        "revocation_max_ms": worst,
        "revocation_trials": len(latencies),
        "revocation_lost": lost,
        "connections": still_open,
        "connections_attempted": args.connections,
        "connect_seconds": round(connect_s, 1),
        "heartbeat_replies_missing": missing_replies,
        "rss_mb": rss_mb,
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_per_connection_kb": round((rss_after - rss_before) / max(held, 1), 1),
        "real_agent_revocation_p50_ms": figures["reject_p50_ms"] if figures else None,
        "real_agent_revocation_p99_ms": figures["reject_p99_ms"] if figures else None,
        "real_agent_static_removal_p50_ms": figures["static_p50_ms"] if figures else None,
        "real_agent_static_removal_p99_ms": figures["static_p99_ms"] if figures else None,
        "real_agent_trials": figures["trials"] if figures else 0,
        "real_agent": figures,
    }
    if skip_reason:
        result["real_agent_skipped"] = skip_reason
    if agent_error:
        result["real_agent_error"] = agent_error
    log(json.dumps(result, indent=1))
    if figures:
        log(
            f"real agent ({figures['trials']} trials, {figures['lost']} lost): policy delete -> "
            f"reject_access applied p50 {figures['reject_p50_ms']} ms, p99 "
            f"{figures['reject_p99_ms']} ms; -> static peer removed p50 "
            f"{figures['static_p50_ms']} ms, p99 {figures['static_p99_ms']} ms "
            f"(delete_policy call p50 {figures['delete_call_p50_ms']} ms)"
        )
    log(
        f"simulated ({len(latencies)} trials): policy delete -> reject_access received "
        f"p50 {p50} ms, p99 {p99} ms; {still_open} connections held, {rss_mb} MB RSS"
    )
    return result


# Predicates on the agent's JSON log events (fields: see PortalClient._log_step). "changes" is the
# number of data-plane commands the message caused: > 0 means the agent knew the flow and removed
# it, not merely that it parsed the message.


def _static_peer_added(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("msg") == "add_static_peer" and e.get("peer") == key


def _static_peer_removed(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("msg") == "remove_static_peer" and e.get("peer") == key


def _flow_installed(auth_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("msg") == "create_authorization"
        and e.get("authorization_id") == auth_id
        and int(e.get("changes", 0)) > 0
    )


def _flow_rejected(auth_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("msg") == "reject_access"
        and auth_id in str(e.get("authorization_ids", "")).split(",")
        and int(e.get("changes", 0)) > 0
    )


def real_agent_trials(
    account: Any, site: Any, agent: AgentProcess, trials: int, stop: threading.Event
) -> dict[str, Any]:
    """Per trial: a policy grants one user's static device and dynamic flow in the agent's
    site; once the agent installed both, delete the policy and time until it applied both
    removals (agent log timestamps, see benchmarks/_agent_lab.py)."""
    from accounts import services as accounts
    from gateways import services as gateways
    from gateways.models import Authorization, Gateway
    from policies import services as policies

    user = accounts.create_actor(account, email="carol@bench.test", name="Carol", type="user")
    group = accounts.create_group(account, name="Agent users")
    accounts.add_member(group, user)
    resource = policies.create_resource(
        account, name="agent-lan", kind="cidr", address="10.203.0.0/24", site=site
    )
    static_key = gateways.register_static_device(user, name="router").device.public_key
    laptop = _client_device(account, user, "carol-laptop")
    gateway = Gateway.objects.for_account(account).get(site=site, external_id=agent.external_id)
    gateway_id = gateway.pk

    reject_ms: list[float] = []
    static_ms: list[float] = []
    call_ms: list[float] = []
    pipe_ms: list[float] = []
    lost = 0
    for _ in range(trials):
        if stop.is_set():
            break
        since = agent.mark()
        policy = policies.create_policy(account, group=group, resource=resource)
        auth = Authorization.objects.create(
            account=account,
            actor=user,
            device=laptop,
            resource=resource,
            policy=policy,
            gateway_id=gateway_id,
        )
        auth_id = str(auth.pk)
        gateways.push_create_authorization(auth)
        agent.wait(_static_peer_added(static_key), since=since)
        agent.wait(_flow_installed(auth_id), since=since)

        since = agent.mark()
        start = time.time()
        policies.delete_policy(policy)
        call_ms.append((time.time() - start) * 1000)
        try:
            rejected = agent.wait(_flow_rejected(auth_id), since=since)
            removed = agent.wait(_static_peer_removed(static_key), since=since)
        except TimeoutError:
            lost += 1
            continue
        reject_ms.append((float(rejected["ts"]) - start) * 1000)
        static_ms.append((float(removed["ts"]) - start) * 1000)
        pipe_ms.append((float(rejected["recv"]) - float(rejected["ts"])) * 1000)
        time.sleep(0.02)

    slowest = sorted(enumerate(zip(reject_ms, static_ms, strict=True)), key=lambda x: -x[1][1])
    log(
        "real agent slowest trials (index, reject ms, static ms): "
        + ", ".join(f"({i}, {r:.0f}, {st:.0f})" for i, (r, st) in slowest[:3])
    )
    if not agent.alive():
        raise RuntimeError(f"the agent died during the trials:\n{agent.tail()}")
    reject = _percentiles(reject_ms)
    static = _percentiles(static_ms)
    return {
        "trials": len(reject_ms),
        "lost": lost,
        "reject_p50_ms": reject[0],
        "reject_p99_ms": reject[1],
        "reject_max_ms": reject[2],
        "static_p50_ms": static[0],
        "static_p99_ms": static[1],
        "static_max_ms": static[2],
        "delete_call_p50_ms": _percentiles(call_ms)[0],
        # How late this process read the log lines (not part of the figures above).
        "log_read_delay_p50_ms": _percentiles(pipe_ms)[0],
    }


if __name__ == "__main__":
    main()
