"""Job schemas and the executors that run them.

The public helpers buyers and providers share:
``canonical_json`` / ``canonical_hash`` (from core :mod:`oa_node.canonical`), ``input_sha256``,
``output_sha256``, ``tree_sha256`` and ``verification_digest`` (``hashing``); the models
(``sandbox_run_schema``, ``repo_index_schema``) with ``from_dict``/``to_dict`` and
``SchemaError``; ``JobType``/``ExecContext``/``Verdict`` (``jobtype``); the built-in job
types in ``builtin`` (imported lazily: they pull in git fetching and the sandbox).
"""

from oa_node.canonical import CanonicalJSONError, canonical_hash, canonical_json
from oa_node.executors.hashing import (
    input_sha256,
    output_sha256,
    tree_sha256,
    verification_digest,
)
from oa_node.executors.schema import SchemaError

__all__ = ["CanonicalJSONError", "SchemaError", "canonical_hash", "canonical_json",
           "input_sha256", "output_sha256", "tree_sha256", "verification_digest"]
