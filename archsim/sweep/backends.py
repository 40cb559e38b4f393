"""Where points run: a local process pool (joblib/loky) or a Dask distributed cluster.

Both backends yield worker outputs as they finish (in completion order), so the runner appends each
result to the results file the moment it exists; an interruption loses at most the running points.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator

from archsim.errors import ArchsimError, EXIT_BAD_INPUT

BACKENDS = ("local", "dask")


class BackendError(ArchsimError):
    """A backend cannot start (dask not installed, no scheduler at the address)."""

    exit_status = EXIT_BAD_INPUT


def check_backend(backend: str) -> None:
    """Fail early (before anything is written) on an unknown backend or a missing dask."""
    if backend not in BACKENDS:
        raise BackendError(f"--backend: got {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "dask":
        _import_distributed()


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise BackendError("the dask backend needs dask.distributed; install the dask extra: "
                           "pip install 'archsim[dask]'") from None
    return distributed


def default_jobs(n_tasks: int) -> int:
    """One worker per core, no more workers than tasks."""
    return max(1, min(n_tasks, os.cpu_count() or 1))


def run_local(fn: Callable[[dict], dict], tasks: list[dict], jobs: int | None = None) -> Iterator[dict]:
    """Run ``fn`` over ``tasks`` on a joblib loky process pool; yield outputs as they complete."""
    if not tasks:
        return iter(())
    from joblib import Parallel, delayed

    n_jobs = jobs or default_jobs(len(tasks))
    calls = (delayed(fn)(task) for task in tasks)
    try:
        # joblib >= 1.4: results come back in completion order, as soon as each one is done.
        parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")
    except ValueError:
        # joblib 1.3: in submission order, still streamed; older: all at the end.
        try:
            parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")
        except (TypeError, ValueError):
            parallel = Parallel(n_jobs=n_jobs, backend="loky")
    return iter(parallel(calls))


def run_dask(fn: Callable[[dict], dict], tasks: list[dict], *, address: str | None = None,
             jobs: int | None = None) -> Iterator[dict]:
    """Run ``fn`` over ``tasks`` on a Dask cluster (at ``address``, else a local one); yield as done."""
    d = _import_distributed()
    return _dask_results(d.Client, d.LocalCluster, d.as_completed, fn, tasks, address, jobs)


def _dask_results(Client, LocalCluster, as_completed, fn, tasks, address, jobs) -> Iterator[dict]:
    if not tasks:
        return
    cluster = None
    try:
        if address:
            client = Client(address, timeout="20s")
        else:
            cluster = LocalCluster(n_workers=jobs or default_jobs(len(tasks)), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise BackendError(f"--address {address}: cannot reach a Dask scheduler "
                           f"({type(exc).__name__}: {first})") from None
    try:
        # pure=False: every task is submitted even if two look alike (the runner already deduped).
        futures = client.map(fn, tasks, pure=False)
        for _future, output in as_completed(futures, with_results=True):
            yield output
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_points(fn: Callable[[dict], dict], tasks: list[dict], *, backend: str = "local",
               address: str | None = None, jobs: int | None = None) -> Iterable[dict]:
    """Dispatch to a backend by name."""
    if backend == "local":
        return run_local(fn, tasks, jobs)
    if backend == "dask":
        return run_dask(fn, tasks, address=address, jobs=jobs)
    raise BackendError(f"--backend: got {backend!r}; allowed: {', '.join(BACKENDS)}")
