"""The builder image: the Docker client, cached stages, the registry, and the file transport.

    base ─► rpms ─► make ─► cmake ─► llvm ─► rust ─► builder   (stages, docker_client)
    stages ◄─► a registry (registry); files in and out of containers (transport)
"""
