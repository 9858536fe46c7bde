"""Built-in plugins, each a package registered through the ``oa_node.plugins`` entry points."""
