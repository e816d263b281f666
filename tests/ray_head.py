"""A Ray head started with Ray's own command line (``ray start --head``), as a user starts one,
kept on loopback, with token authentication; stopped by the ids of the processes it started.

Everything listens on 127.0.0.1: ``--node-ip-address=127.0.0.1`` alone is not enough, Ray
rewrites a loopback node address to the machine's network address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (which also makes Ray's command line refuse a second
node: the two-node tests use Ray's ``Cluster`` utility). The head has its own temporary
folder, ports and token file, so that other Ray instances on the machine are never touched.
"""

import dataclasses
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# Ray's settings that a head or a driver of these tests must not inherit from the caller.
RAY_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
STARTED_LINE = "Ray runtime started."
OBJECT_STORE_BYTES = 100 * 1024 * 1024


@dataclasses.dataclass
class RayHead:
    process: subprocess.Popen
    port: int
    client_port: int
    folder: str  # its temporary folder, log and token file
    token_path: str

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self):
        return os.path.join(self.folder, "head.log")

    def log(self):
        with open(self.log_path) as f:
            return f.read()[-3000:]

    def driver_env(self, **settings):
        """The environment of a process joining this head: its token file, unless
        ``settings`` say otherwise (a value of None removes that variable)."""
        env = clean_env()
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=self.token_path)
        for name, value in settings.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env


def clean_env():
    env = {k: v for k, v in os.environ.items() if k not in RAY_ENV}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def free_port():
    """A port nothing on loopback listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_command():
    """Ray's command line beside this Python (the one ``pip install -e '.[ray]'`` put there)."""
    return shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"


def start_head(num_cpus, timeout=120):
    """``ray start --head --block`` on loopback; -> RayHead once Ray says it started."""
    folder = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")  # Ray's socket paths must be short
    token_path = os.path.join(folder, "auth_token")
    with open(token_path, "w") as f:
        f.write(secrets.token_hex(32))
    port, client_port = free_port(), free_port()
    env = clean_env()
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=token_path)
    command = [ray_command(), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={port}", f"--ray-client-server-port={client_port}",
               "--include-dashboard=false", "--disable-usage-stats", f"--num-cpus={num_cpus}",
               "--num-gpus=0", f"--object-store-memory={OBJECT_STORE_BYTES}",
               f"--temp-dir={os.path.join(folder, 'ray')}"]
    with open(os.path.join(folder, "head.log"), "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    head = RayHead(process, port, client_port, folder, token_path)
    deadline = time.monotonic() + timeout
    while STARTED_LINE not in head.log():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_head(head)
            raise RuntimeError("ray start --head did not start: " + head.log())
        time.sleep(0.2)
    return head


def process_start_time(pid):
    """The kernel's start time of a process (tells a pid from its reuse); None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def descendants(pid):
    """{pid: start time} of every process below ``pid``."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = {}, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        started = process_start_time(child)
        if started is not None:
            found[child] = started
            todo.extend(children.get(child, []))
    return found


def stop_head(head, timeout=60):
    """SIGTERM to ``ray start --block`` (Ray then stops the processes it started); any of
    them still there after ``timeout`` is killed by its pid. -> pids that had to be killed."""
    started = descendants(head.process.pid)
    if head.process.poll() is None:
        head.process.send_signal(signal.SIGTERM)
        try:
            head.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            head.process.kill()
            head.process.wait()
    deadline = time.monotonic() + timeout
    left = dict(started)
    while left and time.monotonic() < deadline:
        left = {pid: t for pid, t in left.items() if process_start_time(pid) == t}
        time.sleep(0.2)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(head.folder, ignore_errors=True)
    return sorted(left)


def socket_inodes(pid):
    """The inodes of the sockets a process holds open."""
    found = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def proc_net_address(text):
    """/proc/net/tcp's hex ``address:port`` (IPv4 or IPv6, in host byte order words) -> ip."""
    hex_ip = text.split(":")[0]
    words = [bytes.fromhex(hex_ip[i:i + 8])[::-1] for i in range(0, len(hex_ip), 8)]
    return ipaddress.ip_address(b"".join(words))


def listening_addresses(pids):
    """{ip address: ports} of the TCP sockets the processes listen on."""
    inodes = set().union(*(socket_inodes(pid) for pid in pids)) if pids else set()
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address = proc_net_address(fields[1])
                found.setdefault(address, set()).add(int(fields[1].split(":")[1], 16))
    return found


def is_loopback(address):
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
