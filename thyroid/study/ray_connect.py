"""Joining a Ray cluster, or starting Ray on this machine for the study, and the one line that
says why a join failed.

A join is checked step by step before ``ray.init``, each step bounded in time, because Ray
itself retries an address that cannot work for many minutes and then reports only "Failed to
connect": the host must resolve, something must accept a connection at the port, and that
something must be a Ray head that accepts this process's authentication token. ``ray.init``
then runs with few retries, and whatever it still reports (a version mismatch, no node of the
cluster on this machine) is named in the same one line, with the fix from docs/SCALING.md.

A cluster on this machine's loopback is joined on loopback: Ray would otherwise rewrite
``127.0.0.1`` into the machine's network address, where a head kept on loopback does not
listen. The driver takes the address of the cluster's node on this machine, whichever it is.

Ray started here listens on loopback only, and its token is made for the study and handed to
its processes in their environment, so that no token file is left in the home folder (a left
token file switches a later ``ray start --head`` to token authentication unasked).
"""

import contextlib
import dataclasses
import os
import secrets
import socket
import threading

from thyroid.flag_errors import FlagValueError

INSTALL_HINT = "pip install -e '.[ray]'"
ADDRESS_ENV = "RAY_ADDRESS"
# Ray rewrites a loopback address (and a loopback node address) to the machine's outward
# address unless this is off; read once, when Ray is imported.
KEEP_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV = (
    "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
# How many one-second attempts ray.init makes to reach the head (Ray's default is 20, each
# of which can wait half a minute on an address that accepts but does not answer).
INIT_ATTEMPTS_ENV, INIT_ATTEMPTS = "RAY_gcs_server_port_wait_time_s", 5
RESOLVE_SECONDS = 5.0
CONNECT_SECONDS = 5.0
HEAD_PROBE_MS = 5000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
RECIPE = "docs/SCALING.md, 'An existing Ray cluster'"
TOKEN_FIX = (f"set {AUTH_MODE_ENV}=token and give the head's token (`ray get-auth-token` on the "
             f"head) as {AUTH_TOKEN_ENV}, or in the file {AUTH_TOKEN_PATH_ENV} names (default "
             "~/.ray/auth_token)")


@dataclasses.dataclass(frozen=True)
class ClusterAddress:
    """Where the cluster to join is: ``given`` as typed, in ``source`` (the flag or the
    environment variable); ``scheme`` is ``ray`` for a Ray Client address (``ray://``) and
    ``auto`` for Ray's ``auto`` (the cluster ``ray start`` started on this machine)."""
    given: str
    source: str
    host: str
    port: int
    scheme: str | None = None

    @property
    def host_port(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self):
        """On this machine's loopback (``auto`` may be: Ray reads its address from a file)."""
        return self.scheme == "auto" or self.host in LOOPBACK_HOSTS


class ClusterJoinError(ConnectionError):
    """The cluster could not be joined: ``<source>=<address>: <cause>; <fix>``."""

    def __init__(self, address, cause, fix):
        super().__init__(f"{address.source}={address.given}: {cause}; {fix} (see {RECIPE})")
        self.address, self.cause, self.fix = address, cause, fix


def cluster_address(flag_value):
    """The address to join (``--ray_address``, else ``RAY_ADDRESS``), or None to start Ray
    here (neither given, or Ray's own ``local``). A value that is not ``HOST:PORT`` (or
    ``ray://HOST:PORT``, or ``auto``) is refused in one line naming where it came from."""
    source, given = ("--ray_address", flag_value) if flag_value is not None else (
        ADDRESS_ENV, os.environ.get(ADDRESS_ENV, ""))
    given = given.strip()
    if source == ADDRESS_ENV and given in ("", "local"):
        return None
    if given == "auto":
        return ClusterAddress(given, source, "", 0, "auto")
    scheme, _, rest = given.rpartition("://")
    host, _, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host and port.isdigit() and 0 < int(port) < 65536 and "/" not in rest and \
            scheme in ("", "ray"):
        return ClusterAddress(given, source, host, int(port), scheme or None)
    reason = ("expected HOST:PORT of the Ray head (the address `ray start --head` printed, "
              "e.g. 10.0.0.5:6379)")
    if source == ADDRESS_ENV:
        raise ValueError(f"{ADDRESS_ENV}={given}: {reason}")
    raise FlagValueError("ray_address", given, reason)


def import_ray(address=None, start_here=False):
    """Ray, with usage statistics off; a one-line error saying how to install it. Set up before
    Ray is imported (it reads these once): a loopback ``address`` or Ray started here stays on
    loopback, and Ray started here gets a token of its own (``private_token``)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    check_token_file()
    if start_here or (address is not None and address.loopback):
        os.environ.setdefault(KEEP_LOOPBACK_ENV, "0")
    if start_here:
        private_token()
    try:
        import ray
    except ImportError:
        raise FlagValueError("executor", "ray", f"Ray is not installed here; {INSTALL_HINT}") \
            from None
    return ray


def check_token_file():
    """A token file named by ``RAY_AUTH_TOKEN_PATH`` exists and holds something (Ray aborts
    the whole process, with a stack trace, on one that does not)."""
    path = os.environ.get(AUTH_TOKEN_PATH_ENV)
    if not path:
        return
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise ValueError(f"{AUTH_TOKEN_PATH_ENV}={path}: Ray's authentication token file cannot "
                         f"be read ({error.strerror})") from None
    if size == 0 or not os.path.isfile(path):
        raise ValueError(f"{AUTH_TOKEN_PATH_ENV}={path}: not a file holding Ray's "
                         "authentication token")


def private_token():
    """Token authentication for the Ray the study starts, with a token made now and passed
    to its processes (children of this one) in the environment; left alone when the user set
    Ray's authentication up."""
    if any(name in os.environ for name in (AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV)):
        return
    os.environ[AUTH_TOKEN_ENV] = secrets.token_hex(32)
    os.environ[AUTH_MODE_ENV] = "token"


def join(ray, address):
    """Joins the cluster at ``address`` or raises ``ClusterJoinError`` naming the cause, in
    about half a minute at most."""
    if address.scheme != "auto":
        check_reachable(address)
    if os.environ.get(AUTH_MODE_ENV, "").lower() == "token" and not has_token():
        raise ClusterJoinError(address, token_cause(), TOKEN_FIX)
    if address.scheme is None:
        probe_head(ray, address)
    target = address.given if address.scheme else address.host_port
    try:
        with few_init_attempts():
            ray.init(address=target, logging_level="warning", log_to_driver=True)
    except Exception as error:
        raise ClusterJoinError(address, *explain(error)) from error


@contextlib.contextmanager
def few_init_attempts():
    """ray.init's attempts to reach the head, bounded for this call only (unless set)."""
    if INIT_ATTEMPTS_ENV in os.environ:
        yield
        return
    os.environ[INIT_ATTEMPTS_ENV] = str(INIT_ATTEMPTS)
    try:
        yield
    finally:
        os.environ.pop(INIT_ATTEMPTS_ENV, None)


def resolve(host, port, seconds=RESOLVE_SECONDS):
    """getaddrinfo with a deadline (a resolver that does not answer can block for minutes)."""
    found = {}

    def lookup():
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            found["error"] = error

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(seconds)
    if "error" in found:
        raise found["error"]
    if "infos" not in found:
        raise TimeoutError(f"no answer from the name resolver within {seconds:g} s")
    return found["infos"]


def check_reachable(address):
    """The host resolves and something accepts a connection at the port."""
    try:
        infos = resolve(address.host, address.port)
    except socket.gaierror as error:
        raise ClusterJoinError(address, f"the host {address.host} cannot be resolved "
                               f"({error.strerror})", "check the name, or give the head's IP "
                               "address") from None
    except TimeoutError as error:
        raise ClusterJoinError(address, f"the host {address.host} cannot be resolved ({error})",
                               "give the head's IP address") from None
    last = None
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(CONNECT_SECONDS)
            try:
                sock.connect(sockaddr)
                return
            except OSError as error:
                last = error
    raise ClusterJoinError(address, *unreachable(address, last))


def unreachable(address, error):
    """(cause, fix) of a port that did not accept a connection."""
    if isinstance(error, ConnectionRefusedError) and address.scheme:
        return (f"nothing listens at {address.host_port} (connection refused)",
                "check the address of the head's Ray Client server (`ray start "
                "--ray-client-server-port`, 10001 by default)")
    if isinstance(error, ConnectionRefusedError):
        return (f"nothing listens at {address.host_port} (connection refused)",
                f"start the head there with `ray start --head --port={address.port}`, or give "
                "the address the head's `ray start` printed")
    if isinstance(error, (TimeoutError, socket.timeout)):
        return (f"no answer from {address.host_port} within {CONNECT_SECONDS:g} s",
                "check the address, and that this machine may reach that port")
    return (f"cannot reach {address.host_port} ({getattr(error, 'strerror', None) or error})",
            "check the address")


def probe_head(ray, address):
    """One bounded call to the head's control service (GCS): it answers, and accepts this
    process's token. Skipped where this Ray has no such call (ray.init then reports)."""
    client = getattr(getattr(ray, "_raylet", None), "InnerGcsClient", None)
    if client is None or not hasattr(client, "standalone"):
        return
    try:
        client.standalone(address.host_port, None, HEAD_PROBE_MS)
    except Exception as error:
        raise ClusterJoinError(address, *explain(error)) from None


def error_chain(error):
    """The error and the ones it was raised from, outermost first."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def has_token():
    """Whether this process has a token to send, where Ray looks for one."""
    path = os.environ.get(AUTH_TOKEN_PATH_ENV) or os.path.expanduser("~/.ray/auth_token")
    return bool(os.environ.get(AUTH_TOKEN_ENV)) or os.path.isfile(path)


def token_cause():
    """What this process does about Ray's authentication token."""
    if os.environ.get(AUTH_MODE_ENV, "").lower() != "token":
        return (f"the cluster requires its authentication token, and this process sends none "
                f"({AUTH_MODE_ENV} is not 'token')")
    if not has_token():
        return f"{AUTH_MODE_ENV}=token, but this process finds no token"
    return "the cluster refused this process's authentication token"


def explain(error):
    """(cause, fix) of a failed join, from what Ray reported."""
    chain = error_chain(error)
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    if any(type(e).__name__ == "AuthenticationError" for e in chain) or \
            "InvalidAuthToken" in text or "Unauthenticated" in text:
        return token_cause(), TOKEN_FIX
    if "Version mismatch" in text:
        found = next(str(e) for e in chain if "Version mismatch" in str(e))
        return (f"Ray reported a version mismatch ({' '.join(found.split())})",
                f"install the same Ray and Python on every node and here ({INSTALL_HINT})")
    if "No node info found" in text or "could not find any running ray" in text.lower():
        return ("no node of the cluster runs on this machine",
                "run the study on a node of the cluster (join this machine first with "
                "`ray start --address=HEAD:PORT`)")
    if "Method not found" in text:
        return ("something answers at that port, but not a Ray head",
                "give the port of the head's `ray start --head --port` (6379 by default), "
                "not its Ray Client or dashboard port")
    if "Timed out while waiting for GCS" in text or "Failed to connect to GCS" in text:
        return ("a connection is accepted there, but no Ray head answers",
                "check the address and port of the head")
    last = chain[-1]
    first_line = (str(last).strip().splitlines() or [""])[0]
    return f"Ray reported {type(last).__name__}: {first_line}", "check the address and the head"
