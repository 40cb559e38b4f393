"""Where points run: a local process pool (joblib/loky) or a Dask distributed cluster.

Both backends yield worker outputs as they finish (in completion order), so the runner appends each
result to the results file the moment it exists; an interruption loses at most the running points.

Local pool workers die with the process that started them: each one watches its parent and exits
as soon as the parent is gone (killed with SIGKILL, say), so no orphaned worker keeps computing.
A Dask ``--address`` is checked for its form before anything runs, and the scheduler must answer
within ``connect_timeout`` seconds (anything else listening there, or nothing at all, is one line).
"""
from __future__ import annotations

import os
import re
import threading
from typing import Callable, Iterable, Iterator

from archsim.errors import ArchsimError, EXIT_BAD_INPUT, SpecError

BACKENDS = ("local", "dask")
#: Address schemes a Dask client can connect to from another process (``inproc://`` cannot).
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
#: Seconds a Dask scheduler gets to accept the connection and answer (``--connect-timeout``).
DEFAULT_CONNECT_TIMEOUT = 10.0
#: How often (seconds) a local worker checks that the process that started it is still there.
PARENT_POLL_S = 0.2

_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
_ADDRESS = re.compile(rf"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>{_HOST}):(?P<port>[0-9]{{1,5}})$")
ADDRESS_FORM = (f"a Dask scheduler address SCHEME://HOST:PORT with SCHEME one of "
                f"{', '.join(DASK_SCHEMES)} (HOST:PORT alone means tcp), e.g. tcp://127.0.0.1:8786")


class BackendError(ArchsimError):
    """A backend cannot start (dask not installed, no scheduler at the address)."""

    exit_status = EXIT_BAD_INPUT


def check_backend(backend: str, address: str | None = None) -> None:
    """Fail early (before anything is written) on an unknown backend, a missing dask, or an
    ``address`` that is not a Dask scheduler address."""
    if backend not in BACKENDS:
        raise BackendError(f"--backend: got {backend!r}; allowed: {', '.join(BACKENDS)}")
    if address is not None:
        check_address(address)
    if backend == "dask":
        _import_distributed()


def check_address(address: str) -> str:
    """``address`` if it has the form of a Dask scheduler address, else a one-line SpecError."""
    text = address if isinstance(address, str) else ""
    match = _ADDRESS.match(text)
    if not match:
        raise SpecError("command line", "--address", address, f"expected {ADDRESS_FORM}")
    scheme = (match["scheme"] or "tcp").lower()
    if scheme not in DASK_SCHEMES:
        raise SpecError("command line", "--address", address,
                        f"unknown scheme {scheme}://; expected {ADDRESS_FORM}")
    if not 1 <= int(match["port"]) <= 65535:
        raise SpecError("command line", "--address", address,
                        f"port {int(match['port'])} is out of range 1-65535; expected {ADDRESS_FORM}")
    return address


def check_connect_timeout(seconds: float) -> float:
    if not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
        raise SpecError("command line", "--connect-timeout", seconds, "expected a positive number of seconds")
    return float(seconds)


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


# -- local pool ------------------------------------------------------------------------------
_watching: int | None = None  # the parent pid this process watches (set once per worker process)
_watch_lock = threading.Lock()


def die_with_parent(parent_pid: int) -> None:
    """In a worker process started by ``parent_pid``: exit as soon as that process is gone.

    A daemon thread polls ``os.getppid()``; when the parent dies (even by SIGKILL, which it cannot
    catch) the worker is re-parented and the thread ends the worker at once. Does nothing in the
    parent itself (``--jobs 1`` runs points in-process), in a process that ``parent_pid`` did not
    start (a Dask worker), or when the thread is already running.
    """
    global _watching
    if os.getpid() == parent_pid or os.getppid() != parent_pid:
        return
    with _watch_lock:
        if _watching == parent_pid:
            return
        _watching = parent_pid

    def watch() -> None:
        import time

        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(143)  # the parent is gone: nobody will read this worker's results

    threading.Thread(target=watch, name="archsim-parent-watch", daemon=True).start()


def call_in_worker(fn: Callable[[dict], dict], task: dict, parent_pid: int) -> dict:
    """What a local pool worker runs: watch the parent (once per process), then ``fn(task)``."""
    die_with_parent(parent_pid)
    return fn(task)


def run_local(fn: Callable[[dict], dict], tasks: list[dict], jobs: int | None = None) -> Iterator[dict]:
    """Run ``fn`` over ``tasks`` on a joblib loky process pool; yield outputs as they complete."""
    if not tasks:
        return iter(())
    from joblib import Parallel, delayed

    # Never more workers than points (a --jobs of 10^12 asks for at most len(tasks) processes).
    n_jobs = min(jobs, len(tasks)) if jobs else default_jobs(len(tasks))
    parent = os.getpid()
    calls = (delayed(call_in_worker)(fn, task, parent) for task in tasks)
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


# -- Dask ------------------------------------------------------------------------------------
def run_dask(fn: Callable[[dict], dict], tasks: list[dict], *, address: str | None = None,
             jobs: int | None = None, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Iterator[dict]:
    """Run ``fn`` over ``tasks`` on a Dask cluster (at ``address``, else a local one); yield as done.

    Connects (or starts the local cluster) before returning, so a scheduler that is not there is a
    one-line :class:`BackendError` before the caller writes anything.
    """
    d = _import_distributed()
    if not tasks:
        return iter(())
    client, cluster = _dask_client(d, address, jobs, len(tasks), connect_timeout)
    try:
        return _DaskOutputs(client, cluster, d.as_completed, fn, tasks)
    except BaseException:
        client.close()
        if cluster is not None:
            cluster.close()
        raise


def _dask_client(d, address, jobs, n_tasks, connect_timeout):
    if not address:
        cluster = d.LocalCluster(n_workers=min(jobs, n_tasks) if jobs else default_jobs(n_tasks),
                                 threads_per_worker=1,
                                 processes=True, dashboard_address=None)
        return d.Client(cluster), cluster
    check_address(address)
    timeout = check_connect_timeout(connect_timeout)
    probe_scheduler(address, timeout)
    try:
        return d.Client(address, timeout=f"{timeout}s"), None
    except BaseException as exc:  # noqa: BLE001 - anything from the connection is one line
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise _unreachable(address, timeout, exc) from None


def probe_scheduler(address: str, timeout: float) -> dict:
    """Connect to ``address``, ask for its identity, and return it, all within ``timeout`` seconds.

    Anything but a Dask scheduler answering in time is a one-line :class:`BackendError`: no listener,
    a listener that never answers (distributed would wait forever for its handshake), one that
    answers garbage (distributed reads a garbage length and tries to allocate exabytes), a Dask
    worker instead of the scheduler.
    """
    import asyncio

    async def ask() -> dict:
        from distributed.comm import connect
        from distributed.core import send_recv
        from distributed.security import Security

        args = Security().get_connection_args("client")
        # A little less than the whole budget: a port where nothing listens is reported as that
        # (distributed retries refused connections until its timeout), not as a silent listener.
        comm = await connect(address, timeout=0.9 * timeout, **args)
        try:
            return await send_recv(comm, op="identity")
        finally:
            comm.abort()

    outcome: dict = {}

    def run() -> None:  # own thread and event loop: works even if the caller runs a loop
        try:
            outcome["identity"] = asyncio.run(asyncio.wait_for(ask(), timeout))
        except BaseException as exc:  # noqa: BLE001 - reported in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="archsim-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if thread.is_alive():
        outcome["error"] = TimeoutError()
    exc = outcome.get("error")
    if exc is not None:
        raise _unreachable(address, timeout, exc) from None
    identity = outcome.get("identity")
    kind = identity.get("type") if isinstance(identity, dict) else None
    if kind != "Scheduler":
        what = f"a Dask {kind}" if isinstance(kind, str) and kind else "something that is not Dask"
        raise SpecError("command line", "--address", address,
                        f"expected a Dask scheduler; {what} answered there")
    return identity


def _unreachable(address: str, timeout: float, exc: BaseException) -> BackendError:
    """One line for any failure to reach a scheduler at ``address``."""
    import asyncio

    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        why = f"no Dask scheduler answered within {timeout:g} s (raise --connect-timeout for a slow one)"
    elif isinstance(exc, OSError) and "Timed out" in str(exc):
        why = f"nothing accepted a connection within {timeout:g} s (is a Dask scheduler running there?)"
    elif isinstance(exc, OSError):
        first = str(exc).splitlines()[0] if str(exc) else ""
        why = f"cannot reach a Dask scheduler ({type(exc).__name__}{': ' + first if first else ''})"
    else:
        # A garbled handshake: a length prefix of exabytes (MemoryError), bytes msgpack cannot
        # read, a struct too short... whatever answered is not a Dask scheduler.
        why = f"something that is not a Dask scheduler answered there (garbled handshake: {type(exc).__name__})"
    return BackendError(f"command line: --address: got {address!r}; {why}")


class _DaskOutputs:
    """Worker outputs in completion order; ``close()`` releases the client (and a local cluster)
    whether or not iteration started."""

    def __init__(self, client, cluster, as_completed, fn, tasks):
        self.client, self.cluster = client, cluster
        # pure=False: every task is submitted even if two look alike (the runner already deduped).
        self._results = as_completed(client.map(fn, tasks, pure=False), with_results=True)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        try:
            _future, output = next(self._results)
        except BaseException:
            self.close()
            raise
        return output

    def close(self) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def run_points(fn: Callable[[dict], dict], tasks: list[dict], *, backend: str = "local",
               address: str | None = None, jobs: int | None = None,
               connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Iterable[dict]:
    """Dispatch to a backend by name."""
    if backend == "local":
        return run_local(fn, tasks, jobs)
    if backend == "dask":
        return run_dask(fn, tasks, address=address, jobs=jobs, connect_timeout=connect_timeout)
    raise BackendError(f"--backend: got {backend!r}; allowed: {', '.join(BACKENDS)}")
