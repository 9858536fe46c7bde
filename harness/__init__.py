"""Helpers shared by ``tests/`` and ``benchmarks/``: bounded waits, free ports, a relay
child process, marketplace nodes.

Not part of the package: setup.py installs only the ``oa_node.*`` folders, so nothing here
ships in the wheel, and ``benchmarks/`` needs no import from ``tests/``.
"""
