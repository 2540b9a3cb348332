"""The audit: read each built library's ELF, fix up weak version needs, judge it against the target.

    library ─► fixup (weak needs marked weak) ─► audit (versions needed vs floors, DT_NEEDED,
               linker, dropped #[used] data) ─► report (text, JSON)

It reads files only: no Docker, no network. The backends call the fix-up; the pipeline
calls the audit.
"""
