"""Package layout: the repository's top-level folders live in the ``oa_node`` namespace.

``plugins/``, ``executors/`` and ``sandbox/`` are installed as ``oa_node.plugins``,
``oa_node.executors`` and ``oa_node.sandbox``, so no generic top-level name lands in
site-packages. Everything else is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {
    "oa_node": "oa_node",
    "oa_node.plugins": "plugins",
    "oa_node.executors": "executors",
    "oa_node.sandbox": "sandbox",
}

packages: list[str] = []
for namespace, folder in ROOTS.items():
    packages.append(namespace)
    packages += [f"{namespace}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=ROOTS,
    package_data={"": ["*.sh", "*.txt", "*.json", "*.toml", "Dockerfile", "py.typed"]},
    include_package_data=True,
)
