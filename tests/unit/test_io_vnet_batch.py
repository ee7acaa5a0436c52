"""`Coalescer.add_many` must give exactly the frames (and leave the state) of `add_into` calls."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.io import vnet
from agents.net import build

MSS = 100


def segment(flow: int, seq: int, size: int, flags: int, v6: bool, ttl: int) -> bytes:
    if v6:
        pkt = bytearray(build.tcp("2001:db8::5", f"fd00::{flow + 1}", 443, 40000, b"p" * size))
        off = 40
    else:
        pkt = bytearray(build.tcp("10.0.0.5", f"100.64.0.{flow + 2}", 443, 40000, b"p" * size))
        pkt[8] = ttl
        off = 20
    pkt[off + 4 : off + 8] = seq.to_bytes(4, "big")
    pkt[off + 13] = flags
    return bytes(pkt)


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """Mostly in-order full-MSS segments of a few flows, with gaps, short and PSH segments,
    retransmissions, TTL changes, SYNs and IPv6 mixed in."""
    seqs = [1000, 5000, 9000]
    out: list[bytes] = []
    for _ in range(draw(st.integers(0, 80))):
        flow = draw(st.sampled_from([0, 0, 0, 1, 2]))
        kind = draw(st.sampled_from(["full"] * 8 + ["short", "psh", "gap", "old", "syn", "ttl"]))
        size = MSS if kind not in ("short",) else draw(st.integers(0, MSS - 1))
        flags = vnet.TCP_ACK | (vnet.TCP_PSH if kind == "psh" else 0)
        if kind == "syn":
            flags = 0x02
        seq = seqs[flow] + (7 if kind == "gap" else 0) - (MSS if kind == "old" else 0)
        out.append(
            segment(flow, seq & 0xFFFFFFFF, size, flags, flow == 2, 63 if kind == "ttl" else 64)
        )
        if kind not in ("old",):
            seqs[flow] = (seq + size) & 0xFFFFFFFF
    return out


@settings(max_examples=150, deadline=None)
@given(streams(), st.integers(1, 30), st.sampled_from([65000, 450, 1000]))
def test_add_many_equals_add_into_one_by_one(
    packets: list[bytes], chunk: int, max_bytes: int
) -> None:
    one, many = vnet.Coalescer(max_bytes), vnet.Coalescer(max_bytes)
    expected: list[bytes] = []
    got: list[bytes] = []
    for i in range(0, len(packets), chunk):
        for p in packets[i : i + chunk]:
            one.add_into(p, expected)
        many.add_many(packets[i : i + chunk], got)
        assert got == expected
    assert many.flush() == one.flush()


def test_add_many_glues_a_run_into_one_gso_frame() -> None:
    packets = [segment(0, 1000 + i * MSS, MSS, vnet.TCP_ACK, False, 64) for i in range(10)]
    frames: list[bytes] = []
    c = vnet.Coalescer()
    c.add_many(packets, frames)
    assert frames == []  # the run is still open
    (frame,) = c.flush()
    assert len(frame) == vnet.VNET_HDR_LEN + 40 + 10 * MSS
    assert vnet.parse_header(frame)[1] == vnet.GSO_TCPV4
