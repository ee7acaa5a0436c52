"""IO side of the agents: TUN device, UDP sockets, nftables, and the drivers that run the cores."""
