"""IO drivers: move packets between a TUN device, a UDP socket and a sans-IO core.

Theory of operation. The core (``GatewayCore`` / ``ClientCore``, wrapped by an :class:`Engine`
adapter from ``agents.io.engine``) is a pure state machine: a datagram from the network or a
packet from the TUN device goes in, TUN writes and UDP transmits come out, and it names the next
time its timers need ``on_timeout``. A driver owns the threads, the clock and the syscalls.
Five interchangeable modes exist because in CPython the best structure is not obvious and has to
be measured (see docs/dataplane.md):

``single``
    One thread; epoll over the TUN fd, the UDP socket and a wake-up eventfd, timeout from the
    core. Each readiness drains up to ``BATCH`` packets. No locks.
``channels``
    The Firezone layout: a TUN reader thread and a TUN writer thread, joined to the processing
    loop (UDP socket + timers) by two bounded queues of 1000 packets. No core locks (only the
    processing loop touches the core); the queues carry the handoff cost.
``threads``
    One thread per direction (TUN -> UDP, UDP -> TUN) plus a timer thread. WireGuard state is
    shared by both directions, so every core call holds one lock; syscalls run outside it, and
    ``cryptography`` releases the GIL while sealing/opening, so the directions overlap there.
``offload``
    ``threads`` with kernel batching: the TUN device has IFF_VNET_HDR + TSO, so one read yields
    a TCP super-packet that we cut per MSS (``agents.io.vnet``), encrypt per segment and send
    with one UDP GSO ``sendmsg``; received datagrams come in UDP GRO batches, are decrypted and
    coalesced back into TCP super-packets for one TUN write.
``offload-single``
    The ``offload`` batching in one epoll thread. Fastest measured (the default): in CPython the
    GIL handoffs between per-direction threads cost more than their overlap gains.

All modes stop on ``stop()`` (thread- and signal-handler-safe: it only sets a flag and writes an
eventfd) and never log per packet above debug.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import udp as udpio
from . import vnet
from .tun import TunDevice

log = logging.getLogger(__name__)

MODES = ("single", "channels", "threads", "offload", "offload-single")
BATCH = 64
QUEUE_PACKETS = 1000
GRO_PROBE = 4096  # datagrams received before giving up on UDP GRO if it never coalesced
MAX_TIMER_SLEEP = 0.5  # seconds; bounds the delay when another thread re-arms the core's timer

Endpoint = tuple[str, int]


class TransmitLike(Protocol):
    @property
    def endpoint(self) -> Endpoint: ...
    @property
    def data(self) -> bytes: ...


# (TUN writes, UDP transmits) produced by one core call
Output = tuple[Sequence[bytes], Sequence[TransmitLike]]


class Engine(Protocol):
    """What a driver needs from a core; ``agents.io.engine`` adapts the concrete cores."""

    def on_network(self, data: bytes, source: Endpoint, now: float) -> Output: ...
    def on_tun(self, packet: bytes, now: float) -> Output: ...
    def on_timeout(self, now: float) -> Output: ...
    def poll_timeout(self) -> float | None: ...


@dataclass
class Stats:
    tun_rx: int = 0
    tun_tx: int = 0
    udp_rx: int = 0
    udp_tx: int = 0
    errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class Driver:
    """Base class: owns the wake-up eventfd, address caches and the send/write helpers."""

    mode = "base"
    # Blocking modes park each thread in its read syscall (no poll per wake-up); stop() then
    # unblocks them by shutting the socket's receive side and deleting the TUN link.
    blocking = False
    tun_blocking = True  # with ``blocking``: also the TUN fd (else it is drained, then polled)

    def __init__(self, engine: Engine, tun: TunDevice, sock: socket.socket) -> None:
        self.engine = engine
        self.tun = tun
        self.sock = sock
        self.stats = Stats()
        self._stopping = False
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # drained, see kick()
        self._sockaddr: dict[Endpoint, tuple[str, int]] = {}
        self._endpoint: dict[tuple[object, ...], Endpoint] = {}
        self._threads: list[threading.Thread] = []
        self._failure: BaseException | None = None
        self._read_size = tun.mtu + 256 if not tun.vnet_hdr else 65536 + vnet.VNET_HDR_LEN
        self._udp_buf = bytearray(65536)
        os.set_blocking(tun.fd, self.blocking and self.tun_blocking)
        sock.setblocking(self.blocking)

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> None:
        """Run until ``stop()``; re-raises a failure of any worker thread."""
        log.info("data plane running", extra={"io_mode": self.mode, "ifname": self.tun.name})
        try:
            self._run()
        finally:
            self._stopping = True
            self._signal()
            for t in self._threads:
                t.join(timeout=2)
            log.info("data plane stopped", extra={"io_mode": self.mode, **self.stats.__dict__})
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        self._stopping = True
        self._signal()
        if self.blocking:
            self._unblock()

    def _unblock(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)  # wakes recv (ENOTCONN raised, wake-up happens)
        with contextlib.suppress(Exception):
            self.tun.unlink()  # a blocked TUN read returns EFAULT once the device is gone

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._wake)
        with contextlib.suppress(OSError):
            os.close(self._kick)

    def kick(self) -> None:
        """Run the engine's timers soon (thread-safe): another thread changed what
        ``poll_timeout`` answers, e.g. the client queued packets to send. The epoll loops wake
        at once; the thread modes' timer loop within MAX_TIMER_SLEEP."""
        with contextlib.suppress(OSError):
            os.eventfd_write(self._kick, 1)

    def _signal(self) -> None:
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)

    def _run(self) -> None:
        raise NotImplementedError

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # surface in run(), stop the others
                log.exception("data plane thread failed", extra={"thread": name})
                self._failure = exc
                self.stop()

        t = threading.Thread(target=guarded, name=f"fz-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    # -- IO helpers ----------------------------------------------------------------------------
    def _address(self, endpoint: Endpoint) -> tuple[str, int]:
        addr = self._sockaddr.get(endpoint)
        if addr is None:
            addr = udpio.sock_address(self.sock, endpoint)
            self._sockaddr[endpoint] = addr
        return addr

    def _source(self, raw: tuple[object, ...]) -> Endpoint:
        ep = self._endpoint.get(raw)
        if ep is None:
            if len(self._endpoint) > 4096:
                self._endpoint.clear()
            ep = udpio.normalize_endpoint(raw)
            self._endpoint[raw] = ep
        return ep

    def _send(self, transmits: Sequence[TransmitLike]) -> None:
        sendto = self.sock.sendto
        for t in transmits:
            try:
                sendto(t.data, self._address(t.endpoint))
            except BlockingIOError:
                self._wait_writable(self.sock.fileno())
                with contextlib.suppress(OSError):
                    sendto(t.data, self._address(t.endpoint))
            except OSError as exc:
                self._count_error("udp_send", exc)
        self.stats.udp_tx += len(transmits)

    def _write_tun(self, packets: Sequence[bytes]) -> None:
        fd = self.tun.fd
        for p in packets:
            try:
                os.write(fd, p)
            except BlockingIOError:
                self._wait_writable(fd)
                with contextlib.suppress(OSError):
                    os.write(fd, p)
            except OSError as exc:
                self._count_error("tun_write", exc)
        self.stats.tun_tx += len(packets)

    def _wait_writable(self, fd: int) -> None:
        select.select([], [fd], [], 0.05)

    def _count_error(self, where: str, exc: OSError) -> None:
        self.stats.errors += 1
        if self.stats.errors & (self.stats.errors - 1) == 0:  # 1, 2, 4, 8 ... : no log floods
            log.warning("data plane io error", extra={"where": where, "err": str(exc),
                                                       "count": self.stats.errors})  # fmt: skip

    def _handle_output(self, out: Output) -> None:
        tun, tx = out
        if tx:
            self._send(tx)
        if tun:
            self._write_tun(tun)

    # -- batched readers (shared by several modes) ---------------------------------------------
    def _drain_udp(self, on_network: Callable[[bytes, Endpoint, float], Output],
                   lock: threading.Lock | _NullLock) -> bool:  # fmt: skip
        """Handle up to BATCH datagrams; False when the socket is empty."""
        # recvfrom(65536) allocates and shrinks 64 KiB per call (~2 us more than this).
        recv_into = self.sock.recvfrom_into
        buf = self._udp_buf
        view = memoryview(buf)
        source = self._source
        for _ in range(BATCH):
            try:
                n, raw = recv_into(buf)
            except BlockingIOError:
                return False
            except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                self._count_error("udp_recv", exc)
                continue
            self.stats.udp_rx += 1
            now = time.monotonic()
            data = bytes(view[:n])
            with lock:
                out = on_network(data, source(raw), now)
            self._handle_output(out)
        return True

    def _drain_tun(self, on_tun: Callable[[bytes, float], Output],
                   lock: threading.Lock | _NullLock) -> bool:  # fmt: skip
        read = os.read
        fd = self.tun.fd
        size = self._read_size
        for _ in range(BATCH):
            try:
                packet = read(fd, size)
            except BlockingIOError:
                return False
            self.stats.tun_rx += 1
            now = time.monotonic()
            with lock:
                out = on_tun(packet, now)
            self._handle_output(out)
        return True

    def _fire_timers(self, lock: threading.Lock | _NullLock) -> float | None:
        """Run the core's timers if due; returns the next deadline."""
        with lock:
            deadline = self.engine.poll_timeout()
            now = time.monotonic()
            out: Output | None = None
            if deadline is not None and deadline <= now:
                out = self.engine.on_timeout(now)
                deadline = self.engine.poll_timeout()
        if out is not None:
            self._handle_output(out)
        return deadline

    def _epoll_loop(self, lock: threading.Lock | _NullLock, udp_round: Callable[[], bool],
                    tun_round: Callable[[], bool]) -> None:  # fmt: skip
        """One thread over the TUN fd, the UDP socket and the wake-up eventfd, timers in between.

        Each ``*_round`` handles one batch and returns True when the batch was full ("come
        back" without waiting); the directions alternate so neither starves the other."""
        ep = select.epoll()
        tun_fd, udp_fd = self.tun.fd, self.sock.fileno()
        ep.register(tun_fd, select.EPOLLIN)
        ep.register(udp_fd, select.EPOLLIN)
        ep.register(self._wake, select.EPOLLIN)
        ep.register(self._kick, select.EPOLLIN)
        pending_tun = pending_udp = False
        try:
            while not self._stopping:
                deadline = self._fire_timers(lock)
                if pending_tun or pending_udp:
                    timeout = 0.0
                elif deadline is None:
                    timeout = -1.0
                else:
                    timeout = max(0.0, deadline - time.monotonic())
                for fd, _ev in ep.poll(timeout):
                    if fd == tun_fd:
                        pending_tun = True
                    elif fd == udp_fd:
                        pending_udp = True
                    elif fd == self._kick:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(self._kick)
                if pending_udp:
                    pending_udp = udp_round()
                if pending_tun:
                    pending_tun = tun_round()
        finally:
            ep.close()

    def _wait(self, fd: int, timeout: float | None) -> bool:
        """Block until ``fd`` is readable or stop() was called; False if stopping."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        poller.poll(ms)
        return not self._stopping


class SingleDriver(Driver):
    mode = "single"

    def _run(self) -> None:
        lock = _NullLock()
        engine = self.engine
        on_network, on_tun = engine.on_network, engine.on_tun
        self._epoll_loop(
            lock, lambda: self._drain_udp(on_network, lock), lambda: self._drain_tun(on_tun, lock)
        )


class ThreadsDriver(Driver):
    mode = "threads"
    blocking = True

    def __init__(self, engine: Engine, tun: TunDevice, sock: socket.socket) -> None:
        super().__init__(engine, tun, sock)
        self.lock: threading.Lock | _NullLock = threading.Lock()

    def _run(self) -> None:
        self._spawn("tun-rx", self._tun_loop)
        self._spawn("udp-rx", self._udp_loop)
        self._timer_loop()

    def _timer_loop(self) -> None:
        while not self._stopping:
            deadline = self._fire_timers(self.lock)
            sleep = MAX_TIMER_SLEEP
            if deadline is not None:
                sleep = min(sleep, max(0.0, deadline - time.monotonic()))
            self._wait_wake(sleep)

    def _wait_wake(self, timeout: float) -> None:
        # The eventfd is only ever written by stop() and never drained, so every waiter sees it.
        select.select([self._wake], [], [], timeout)

    def _tun_loop(self) -> None:
        fd, size, read = self.tun.fd, self._read_size, os.read
        on_tun = self.engine.on_tun
        lock = self.lock
        handle = self._handle_output
        stats = self.stats
        while True:
            try:
                packet = read(fd, size)
            except OSError:
                if self._stopping:
                    return
                raise
            stats.tun_rx += 1
            now = time.monotonic()
            with lock:
                out = on_tun(packet, now)
            handle(out)

    def _udp_loop(self) -> None:
        recv_into = self.sock.recvfrom_into
        buf = self._udp_buf
        view = memoryview(buf)
        source = self._source
        on_network = self.engine.on_network
        lock = self.lock
        handle = self._handle_output
        stats = self.stats
        while True:
            try:
                n, raw = recv_into(buf)
            except OSError as exc:
                if self._stopping:
                    return
                self._count_error("udp_recv", exc)
                continue
            if self._stopping:
                return
            stats.udp_rx += 1
            now = time.monotonic()
            data = bytes(view[:n])
            with lock:
                out = on_network(data, source(raw), now)
            handle(out)


class _Channel:
    """Bounded packet queue (the Firezone channel) that can wake an epoll loop via an eventfd."""

    def __init__(self, capacity: int, notify_fd: int | None = None) -> None:
        self.items: deque[bytes] = deque()
        self.capacity = capacity
        self.cond = threading.Condition()
        self.notify_fd = notify_fd

    def put_many(self, packets: Sequence[bytes], stopping: Callable[[], bool]) -> None:
        with self.cond:
            while len(self.items) >= self.capacity and not stopping():
                self.cond.wait(0.2)
            was_empty = not self.items
            self.items.extend(packets)
            self.cond.notify_all()
        if was_empty and self.notify_fd is not None:
            os.eventfd_write(self.notify_fd, 1)

    def take_all(self, block: bool, stopping: Callable[[], bool]) -> list[bytes]:
        with self.cond:
            while block and not self.items and not stopping():
                self.cond.wait(0.2)
            items = list(self.items)
            self.items.clear()
            self.cond.notify_all()
            return items


class ChannelsDriver(Driver):
    mode = "channels"

    def __init__(self, engine: Engine, tun: TunDevice, sock: socket.socket) -> None:
        super().__init__(engine, tun, sock)
        self._inbound_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.from_tun = _Channel(QUEUE_PACKETS, self._inbound_fd)
        self.to_tun = _Channel(QUEUE_PACKETS)

    def _stopping_fn(self) -> bool:
        return self._stopping

    def _write_tun(self, packets: Sequence[bytes]) -> None:
        # The processing loop never writes TUN itself: hand over to the writer thread.
        self.to_tun.put_many(packets, self._stopping_fn)

    def _reader(self) -> None:
        fd, size, read = self.tun.fd, self._read_size, os.read
        while not self._stopping:
            batch: list[bytes] = []
            try:
                for _ in range(BATCH):
                    batch.append(read(fd, size))
            except BlockingIOError:
                pass
            if batch:
                self.stats.tun_rx += len(batch)
                self.from_tun.put_many(batch, self._stopping_fn)
            else:
                self._wait(fd, None)

    def _writer(self) -> None:
        fd, write = self.tun.fd, os.write
        while not self._stopping:
            for p in self.to_tun.take_all(True, self._stopping_fn):
                try:
                    write(fd, p)
                except BlockingIOError:
                    self._wait_writable(fd)
                    with contextlib.suppress(OSError):
                        write(fd, p)
                except OSError as exc:
                    self._count_error("tun_write", exc)
                self.stats.tun_tx += 1

    def _run(self) -> None:
        self._spawn("tun-reader", self._reader)
        self._spawn("tun-writer", self._writer)
        ep = select.epoll()
        udp_fd = self.sock.fileno()
        ep.register(udp_fd, select.EPOLLIN)
        ep.register(self._inbound_fd, select.EPOLLIN)
        ep.register(self._wake, select.EPOLLIN)
        ep.register(self._kick, select.EPOLLIN)
        lock = _NullLock()
        engine = self.engine
        on_tun = engine.on_tun
        pending_udp = False
        try:
            while not self._stopping:
                deadline = self._fire_timers(lock)
                if pending_udp or self.from_tun.items:
                    timeout = 0.0
                elif deadline is None:
                    timeout = -1.0
                else:
                    timeout = max(0.0, deadline - time.monotonic())
                for fd, _ev in ep.poll(timeout):
                    if fd == udp_fd:
                        pending_udp = True
                    elif fd == self._inbound_fd:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(self._inbound_fd)
                    elif fd == self._kick:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(self._kick)
                if pending_udp:
                    pending_udp = self._drain_udp(engine.on_network, lock)
                packets = self.from_tun.take_all(False, self._stopping_fn)
                for p in packets:
                    self._handle_output(on_tun(p, time.monotonic()))
        finally:
            ep.close()
            with self.to_tun.cond:
                self.to_tun.cond.notify_all()

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            os.close(self._inbound_fd)


class OffloadDriver(ThreadsDriver):
    """Per-direction threads with TSO reads, UDP GSO sends, UDP GRO receives, TCP coalescing."""

    mode = "offload"
    tun_blocking = False

    def __init__(self, engine: Engine, tun: TunDevice, sock: socket.socket) -> None:
        if not tun.vnet_hdr:
            raise ValueError("offload mode needs a TUN device created with vnet_hdr=True")
        super().__init__(engine, tun, sock)
        self.gro = udpio.enable_gro(sock)
        self._gro_probed = self._gro_coalesced = 0
        self._rxbuf = bytearray(65536 + 4096)
        self._rxview = memoryview(self._rxbuf)
        self._coalescer = vnet.Coalescer()

    def _send(self, transmits: Sequence[TransmitLike]) -> None:
        if len(transmits) == 1:
            super()._send(transmits)
        else:  # consecutive datagrams to one endpoint leave in one GSO sendmsg
            self._send_pairs([(t.endpoint, t.data) for t in transmits])

    def _write_tun_frames(self, frames: Sequence[bytes]) -> None:
        fd = self.tun.fd
        for f in frames:
            try:
                os.write(fd, f)
            except BlockingIOError:
                self._wait_writable(fd)
                with contextlib.suppress(OSError):
                    os.write(fd, f)
            except OSError as exc:
                self._count_error("tun_write", exc)
        self.stats.tun_tx += len(frames)

    def _write_tun(self, packets: Sequence[bytes]) -> None:
        # Output outside the coalescing path (timers, replies): plain frames, no GSO.
        self._write_tun_frames([vnet.NO_OFFLOAD_HDR + p for p in packets])

    def _read_frames(self) -> list[bytes]:
        """Drain up to BATCH queued TUN frames ([] if none). A TSO super-packet is a batch by
        itself, and the ACKs a receiver sends for one coalesced write arrive together."""
        fd, size, read = self.tun.fd, self._read_size, os.read
        frames: list[bytes] = []
        try:
            for _ in range(BATCH):
                frames.append(read(fd, size))
        except BlockingIOError:
            pass
        self.stats.tun_rx += len(frames)
        return frames

    def _process_frames(self, frames: list[bytes]) -> None:
        """Segment, route once per super-packet, seal, and send with GSO per endpoint."""
        segment = vnet.segment
        engine = self.engine
        on_tun = engine.on_tun
        route = getattr(engine, "route", None)
        encrypt_batch = getattr(engine, "encrypt_batch", None)
        now = time.monotonic()
        tun_out: list[bytes] = []
        datagrams: list[tuple[Endpoint, bytes]] = []
        with self.lock:
            for frame in frames:
                segs = segment(frame)
                if route is not None and encrypt_batch is not None and len(segs) > 1:
                    peer = route(segs[0], now)
                    if peer is None:
                        continue
                    ep, sealed, others = encrypt_batch(peer, segs, now)
                    for t in others:
                        datagrams.append((t.endpoint, t.data))
                    if ep is not None:
                        datagrams.extend([(ep, d) for d in sealed])
                    continue
                for pkt in segs:
                    tun, tx = on_tun(pkt, now)
                    for t in tx:
                        datagrams.append((t.endpoint, t.data))
                    if tun:
                        tun_out.extend(tun)
        if len(datagrams) == 1:
            ep, d = datagrams[0]
            try:
                self.sock.sendto(d, self._address(ep))
            except OSError as exc:
                self._count_error("udp_send", exc)
            self.stats.udp_tx += 1
        elif datagrams:
            self._send_pairs(datagrams)
        if tun_out:
            self._write_tun(tun_out)

    def _tun_loop(self) -> None:
        fd = self.tun.fd
        while not self._stopping:
            try:
                frames = self._read_frames()
            except OSError:
                if self._stopping:
                    return
                raise
            if frames:
                self._process_frames(frames)
            else:
                self._wait(fd, None)

    def _send_pairs(self, pairs: Sequence[tuple[Endpoint, bytes]]) -> None:
        """Send (endpoint, datagram) pairs, one GSO sendmsg per run of the same endpoint."""
        n = len(pairs)
        i = 0
        while i < n:
            ep = pairs[i][0]
            j = i + 1
            while j < n and pairs[j][0] == ep:
                j += 1
            chunk = [d for _, d in pairs[i:j]]
            try:
                udpio.send_gso(self.sock, chunk, self._address(ep))
            except BlockingIOError:
                self._wait_writable(self.sock.fileno())
                with contextlib.suppress(OSError):
                    udpio.send_gso(self.sock, chunk, self._address(ep))
            except OSError as exc:
                if exc.errno == errno.EIO:  # GSO refused: fall back to one datagram per call
                    for d in chunk:
                        with contextlib.suppress(OSError):
                            self.sock.sendto(d, self._address(ep))
                else:
                    self._count_error("udp_send", exc)
            i = j
        self.stats.udp_tx += n

    def _udp_round(self) -> int:
        """Receive up to BATCH datagrams (the first receive blocks if the socket does), decrypt,
        coalesce and write; returns how many datagrams were handled (-1: stopping).

        With an engine that has ``on_network_batch`` the round is received first and each run of
        datagrams from one source is handed over in one call (one lock hold, no per-datagram
        call or result object); otherwise each datagram goes through ``on_network``."""
        sock = self.sock
        buf = self._rxbuf
        view = self._rxview
        on_network = self.engine.on_network
        on_batch = getattr(self.engine, "on_network_batch", None)
        frames: list[bytes] = []
        tx_out: list[TransmitLike] = []
        got = 0
        flags = 0  # the first receive may block; the rest only take what is already queued
        gro = self.gro
        lock = None if isinstance(self.lock, _NullLock) else self.lock
        now = 0.0
        runs: list[tuple[Endpoint, list[bytes]]] = []
        run: list[bytes] = []
        run_source: Endpoint | None = None
        while got < BATCH:
            try:
                if gro:
                    nbytes, seg, raw = udpio.recv_gro(sock, buf, flags)
                else:
                    nbytes, raw = sock.recvfrom_into(buf, 0, flags)
                    seg = nbytes
            except BlockingIOError:
                break
            except OSError as exc:
                if self._stopping:
                    return -1
                self._count_error("udp_recv", exc)
                continue
            if self._stopping:
                return -1
            flags = socket.MSG_DONTWAIT
            if gro:
                # GRO only coalesces where the receiving device does GRO. When it never does,
                # recvmsg_into costs ~1.3 us more per datagram than recvfrom_into: switch.
                self._gro_probed += 1
                if seg < nbytes:
                    self._gro_coalesced += 1
                elif self._gro_probed >= GRO_PROBE and not self._gro_coalesced:
                    gro = self.gro = not udpio.disable_gro(sock)
                    log.info("udp gro never coalesced; using plain receives")
            source = self._source(raw)
            if not got:
                now = time.monotonic()  # one clock read per round (<= BATCH datagrams, < 1 ms)
            if on_batch is not None:
                if source != run_source:
                    run = []
                    runs.append((source, run))
                    run_source = source
                if seg >= nbytes:
                    got += 1
                    run.append(bytes(view[:nbytes]))
                else:
                    parts = udpio.split_gro(view, nbytes, seg)
                    got += len(parts)
                    run.extend([bytes(part) for part in parts])
                continue
            if seg >= nbytes:
                got += 1
                if lock is None:
                    tun, tx = on_network(bytes(view[:nbytes]), source, now)
                else:
                    with lock:
                        tun, tx = on_network(bytes(view[:nbytes]), source, now)
                if tx:
                    tx_out.extend(tx)
                for pkt in tun:
                    self._coalescer.add_into(pkt, frames)
                continue
            parts = udpio.split_gro(view, nbytes, seg)
            got += len(parts)
            with self.lock:
                for part in parts:
                    tun, tx = on_network(bytes(part), source, now)
                    if tx:
                        tx_out.extend(tx)
                    for pkt in tun:
                        self._coalescer.add_into(pkt, frames)
        if on_batch is not None:
            add_many = self._coalescer.add_many
            for source, datagrams in runs:
                if lock is None:
                    tun, tx = on_batch(datagrams, source, now)
                else:
                    with lock:
                        tun, tx = on_batch(datagrams, source, now)
                if tx:
                    tx_out.extend(tx)
                if tun:
                    add_many(tun, frames)
        self.stats.udp_rx += got
        frames.extend(self._coalescer.flush())
        if tx_out:
            self._send(tx_out)
        if frames:
            self._write_tun_frames(frames)
        return got

    def _udp_loop(self) -> None:
        while self._udp_round() >= 0:
            pass


class OffloadSingleDriver(OffloadDriver):
    """The offload batching in one thread (epoll), without the GIL handoffs between threads."""

    mode = "offload-single"
    blocking = False

    def __init__(self, engine: Engine, tun: TunDevice, sock: socket.socket) -> None:
        super().__init__(engine, tun, sock)
        self.lock = _NullLock()  # one thread: nothing to serialize

    def _run(self) -> None:
        self._epoll_loop(self.lock, lambda: self._udp_round() >= BATCH, self._tun_round)

    def _tun_round(self) -> bool:
        """Read and handle one batch of TUN frames; True if the batch was full."""
        frames = self._read_frames()
        full = len(frames) >= BATCH
        if frames:
            self._process_frames(frames)
        return full


DRIVERS: dict[str, type[Driver]] = {
    "single": SingleDriver,
    "channels": ChannelsDriver,
    "threads": ThreadsDriver,
    "offload": OffloadDriver,
    "offload-single": OffloadSingleDriver,
}


def make_driver(mode: str, engine: Engine, tun: TunDevice, sock: socket.socket) -> Driver:
    try:
        cls = DRIVERS[mode]
    except KeyError:
        raise ValueError(f"unknown io mode {mode!r}; choose one of {', '.join(MODES)}") from None
    return cls(engine, tun, sock)


def needs_vnet_hdr(mode: str) -> bool:
    return mode.startswith("offload")
