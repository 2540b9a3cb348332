"""Trusted inputs: the lockfile, HTTP, downloads into the store, verification, pin refresh.

    rsrc.lock.toml ─► lockfile ─► download (http) ─► store ─► verify ─► pins (lock refresh)
                 ◄──────────────────────── lockwrite ◄─── pins, and rpms --refresh
"""
