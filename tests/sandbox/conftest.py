"""Real-Docker fixtures (skip without a daemon, fail under CI) and small helpers."""

from __future__ import annotations

from oa_node.sandbox.testing import docker_client, docker_sandbox, sandbox_image

__all__ = ["docker_client", "docker_sandbox", "sandbox_image"]
