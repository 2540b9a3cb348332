"""The smoke test: dlopen(RTLD_NOW) each library on an old glibc and call it.

    harness (a C program, compiled per place) ─► smoke (the target image, a sysroot, this machine)
    sysroot (pinned RPMs or .debs unpacked) ─► matrix (every glibc within reach, one table)
"""
