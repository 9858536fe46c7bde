"""Fixtures every test area may use: the real Docker sandbox.

``docker_client`` skips the test when no daemon answers, except under CI (env ``CI`` set),
where a missing daemon is a failure: the Docker tests must run there, not be skipped.
``sandbox_image`` builds the base image once per session through ``build_base_image``
(reused when present), so ``pytest`` alone is self-contained once a daemon runs. The
sandbox modules are imported only by a test that asks for these fixtures.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def docker_client() -> Any:
    from oa_node.sandbox.base import SandboxUnavailable
    from oa_node.sandbox.docker import connect

    try:
        return connect(timeout=30)
    except SandboxUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but Docker is unavailable: {exc}", pytrace=False)
        pytest.skip(f"no Docker daemon (start one to run the sandbox tests): {exc}")


@pytest.fixture(scope="session")
def sandbox_image(docker_client: Any) -> str:
    from oa_node.sandbox.image import build_base_image

    return build_base_image(docker_client, progress=lambda line: print(line, flush=True))


@pytest.fixture
def docker_sandbox(docker_client: Any, sandbox_image: str) -> Iterator[Any]:
    from oa_node.sandbox.docker import DockerSandbox

    sb = DockerSandbox(docker_client, default_image=sandbox_image,
                       namespace=f"pytest-{uuid.uuid4().hex[:8]}")
    try:
        yield sb
    finally:
        sb.close()
