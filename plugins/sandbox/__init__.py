"""The built-in sandbox plugin: Docker backend, the two job schemas, ``oa-node sandbox``.

Hooks: ``[sandbox]`` config, the ``docker`` sandbox factory, the ``oa.sandbox_run.v1`` and
``oa.repo_index.v1`` job types and the ``sandbox`` CLI sub-app. Heavy imports (docker,
GitPython) happen only when a hook is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    from oa_node.plugins.sandbox.config import sandbox_section

    register(sandbox_section())


@hookimpl
def register_sandboxes(register: Callable[..., None]) -> None:
    from oa_node.plugins.sandbox.config import make_sandbox

    register("docker", make_sandbox)


@hookimpl
def register_job_types(register: Callable[..., None]) -> None:
    from oa_node.executors.builtin import BUILTIN_JOB_TYPES

    for job_type in BUILTIN_JOB_TYPES:
        register(job_type)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from oa_node.plugins.sandbox.cli import app as sandbox_app

    app.add_typer(sandbox_app, name="sandbox")
