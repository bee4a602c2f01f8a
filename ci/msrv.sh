#!/usr/bin/env bash
# The MSRV (`rust-version` in Cargo.toml), checked with the one toolchain CI has (stable):
#   - clippy's `incompatible_msrv` lint is denied (Cargo.toml [workspace.lints]), so every
#     `cargo clippy` run of .ci/run fails on a std API newer than `rust-version`;
#   - here: every dependency Cargo.lock resolves for Linux declares a `rust-version` no newer
#     than ours (the edition-2024 resolver prefers such versions; this makes it a rule).
# Language features are not checked by either (a newer compiler accepts them): keep the
# comment on `rust-version` in Cargo.toml true when using one.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo metadata --format-version 1 --locked --all-features --filter-platform x86_64-unknown-linux-gnu | python3 -c '
import json, sys
m = json.load(sys.stdin)
ver = lambda v: tuple(int(x) for x in v.split("."))
ours = {p["id"]: p for p in m["packages"] if p["id"] in m["workspace_members"]}
msrv = min(ver(p["rust_version"]) for p in ours.values())
used = {n["id"] for n in m["resolve"]["nodes"]}
bad = [f"{p['"'"'name'"'"']} {p['"'"'version'"'"']} needs Rust {p['"'"'rust_version'"'"']}"
       for p in m["packages"]
       if p["id"] in used and p["rust_version"] and ver(p["rust_version"]) > msrv]
print("msrv: rust-version", ".".join(map(str, msrv)), "for", len(ours), "crates and", len(used) - len(ours), "dependencies")
if bad:
    print("dependencies newer than the MSRV:", *bad, sep="\n  ")
    sys.exit(1)
'
