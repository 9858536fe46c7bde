"""The built-in job types: the core registers them itself (``Registries.job_types``)."""

from __future__ import annotations

from oa_node.executors import repo_index_schema, sandbox_run_schema
from oa_node.executors.jobtype import JobType
from oa_node.executors.repo_index import admit_repo_index, execute_repo_index, verify_repo_index
from oa_node.executors.sandbox_run import (
    admit_sandbox_run,
    execute_sandbox_run,
    verify_sandbox_run,
)

SANDBOX_RUN = JobType(
    schema_id=sandbox_run_schema.SCHEMA_ID,
    request_model=sandbox_run_schema.SandboxRunRequest,
    result_model=sandbox_run_schema.SandboxRunResult,
    executor=execute_sandbox_run,
    verifier=verify_sandbox_run,
    description="Run commands on a repository checkout in a sandbox (tests, builds).",
    admit=admit_sandbox_run,
)

REPO_INDEX = JobType(
    schema_id=repo_index_schema.SCHEMA_ID,
    request_model=repo_index_schema.RepoIndexRequest,
    result_model=repo_index_schema.RepoIndexResult,
    executor=execute_repo_index,
    verifier=verify_repo_index,
    description="Index a repository: file digests and tree hash, Python symbols, dependencies.",
    admit=admit_repo_index,
)

BUILTIN_JOB_TYPES: tuple[JobType, ...] = (SANDBOX_RUN, REPO_INDEX)
