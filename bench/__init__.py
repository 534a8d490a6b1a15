"""Performance harness: `python -m bench [--quick] [--json-out PATH]` (or `make bench`).

Every figure is a ratio against a baseline measured in the same invocation on the same
machine (pgbench tpcb-like for issuance, the health Check RPC for the read path), because
the absolute numbers of a shared, noisy machine mean little. Bench figures never become
test assertions.
"""
