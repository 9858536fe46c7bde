"""GitAfter: git collaboration over Nostr (NIP-34) as ``oa-node git``.

Repository announcements and state, patches and pull requests, statuses, issues and NIP-22
comments, with NIP-SA trajectories attached to proposals and bounties paid as zaps. The
protocol rules live in :mod:`.nip34` (pure), git work in :mod:`.gitops` (reading, sending)
and :mod:`.gitapply` (applying, checking out), relay I/O in :mod:`.remote`, and the commands
in :mod:`.cli` (repository), :mod:`.cli_browse` (list, show), :mod:`.cli_send`,
:mod:`.cli_review` (apply, checkout, statuses) and :mod:`.cli_issues`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from oa_node.cli_kit import lazy_sub_app

    lazy_sub_app(app, "git", "oa_node.plugins.gitafter:git_app",
                 "Git collaboration over Nostr (NIP-34): announce a repository, send patches "
                 "and pull requests, review, apply, merge, and track issues.")


def git_app() -> typer.Typer:
    """``oa-node git``, built when first used (lazily: ``oa-node --help`` does not pay)."""
    from oa_node.plugins.gitafter import cli_browse, cli_issues, cli_review, cli_send
    from oa_node.plugins.gitafter.cli import app

    del cli_browse, cli_issues, cli_review, cli_send  # imported for their commands, on cli's apps
    return app
