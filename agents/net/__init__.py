"""Pure packet code: IP parsing and checksums (packet), ICMP error replies (icmp), the gateway's
per-peer packet filter (filter) and packet builders for tests and probes (build)."""
