"""The ``oa-node`` entry point: imports nothing until it knows what the command needs.

``oa-node version`` needs neither the plugins nor the CLI framework, so it answers before
either is imported; every other command builds the full CLI (:mod:`oa_node.cli`), whose
plugin command groups are themselves imported only when used. Start-up time is measured by
``benchmarks/cli.py``.
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv in (["version"], ["version", "--json"]):
        from oa_node import __version__

        if argv[-1] == "--json":  # the same JSON as print_json
            import json

            sys.stdout.write(json.dumps({"version": __version__}, indent=2, sort_keys=True)
                             + "\n")
        else:
            sys.stdout.write(f"oa-node {__version__}\n")
        return
    from oa_node.cli import main as cli_main

    cli_main()


if __name__ == "__main__":  # pragma: no cover
    main()
