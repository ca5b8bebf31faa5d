"""natchat: peer-to-peer chat that gets through NATs, and the tools to understand the NAT in between."""

__version__ = "0.1.0"
