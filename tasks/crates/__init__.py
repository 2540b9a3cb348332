"""Crates: inspect, build in the builder image, audit the ELF, smoke-test the load.

    crate ─► build ─► audit ─► smoke (image, sysroot, this machine)
"""
