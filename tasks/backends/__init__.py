"""The backends: a crate's cdylibs built for the target, by the builder image or by zig.

    crate ─► inspect (crate) ─► sources (path deps) ─► fetch (registry deps)
          ─► docker (cargo in the builder image) │ zig (cargo-zigbuild, no Docker)
          ─► <out>/<target>/lib*.so + last-build.json (outputs), up-to-date stamp (uptodate)

Both backends share one build signature and one set of outputs (:mod:`tasks.backends.outputs`),
so the audit and smoke steps cannot tell them apart.
"""
