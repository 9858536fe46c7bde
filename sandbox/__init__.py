"""Sandbox backends behind one interface.

``base`` holds the ``Sandbox`` protocol and the values it exchanges (``RunSpec``,
``RunOutcome``, ``Limits``, ``CancelToken``); ``docker`` the hardened Docker backend;
``image`` the registry-free base image builder; ``runner`` the in-container job runner;
``testing`` pytest fixtures for code that needs the real sandbox.
"""

from oa_node.sandbox.base import (
    CancelToken,
    CommandSpec,
    Limits,
    RunOutcome,
    RunSpec,
    Sandbox,
    SandboxError,
    SandboxUnavailable,
)

__all__ = ["CancelToken", "CommandSpec", "Limits", "RunOutcome", "RunSpec", "Sandbox",
           "SandboxError", "SandboxUnavailable"]
