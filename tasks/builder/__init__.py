"""The builder image: the Docker client, cached stages, and the target's pinned packages.

    base ─► rpms ─► make ─► cmake ─► llvm ─► rust ─► builder   (stages, docker_client)
    Fedora repodata ─► rpms (resolution, rpmver) ─► [[rpm]] pins
"""
