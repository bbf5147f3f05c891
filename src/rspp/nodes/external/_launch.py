"""Trusted launcher of an external node process (F-123, F-124); standard library only.

Run by path (``python -I -S _launch.py CONFIG_JSON -- COMMAND...``) so it starts in
milliseconds and imports nothing of the runtime. It applies the node's limits to itself,
writes one ``sandbox`` frame on stdout saying exactly what it enforced, then executes the
node program, which inherits everything:

* always: rlimits from the config (``RLIMIT_CPU`` seconds: soft, SIGXCPU, with the hard
  limit one second later; ``RLIMIT_AS`` bytes,
  ``RLIMIT_NOFILE``, ``RLIMIT_CORE`` 0);
* sandbox mode: ``RLIMIT_FSIZE`` 0 (no file grows), ``PR_SET_NO_NEW_PRIVS``, an empty
  network namespace (``unshare(CLONE_NEWNET)``, with ``CLONE_NEWUSER`` when not root: only
  a loopback that is down), and a Landlock ruleset: the filesystem is read/execute-only
  under the allowed paths (interpreter, import path, package directory) and nothing
  else at all (no read, no write, no create); TCP bind/connect denied (Landlock ABI >= 4);
  abstract unix sockets and signals to processes outside the sandbox denied (ABI >= 6).

Sandbox mode fails closed: without Landlock or without a network boundary, the launcher
reports ``refused`` and exits 70 instead of running the node unconfined. Not covered (no
seccomp filter): system calls themselves, UDP/raw sockets (inside the empty namespace they
reach nothing), and reading files already open when the launcher started (only stdio).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import struct
import sys

_LEN = struct.Struct(">I")
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446  # x86_64 and aarch64 alike
_FS_V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_FS_BY_ABI = {1: _FS_V1, 2: _FS_V1 | 1 << 13, 3: _FS_V1 | 3 << 13, 5: _FS_V1 | 7 << 13}
_READ_FILE = 1 << 0 | 1 << 2  # EXECUTE | READ_FILE
_READ_DIR = _READ_FILE | 1 << 3
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_EXIT_REFUSED = 70


def _frame(msg: dict[str, object], codec: str) -> bytes:
    if codec == "msgpack":
        body = _msgpack_map(msg)
    else:
        body = json.dumps(msg, separators=(",", ":")).encode()
    return _LEN.pack(len(body)) + body


def _msgpack_map(obj: object) -> bytes:
    """A tiny MessagePack encoder for the report (maps, lists, str, int, bool, None)."""
    if obj is None:
        return b"\xc0"
    if obj is True or obj is False:
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        return b"\xd3" + struct.pack(">q", obj)
    if isinstance(obj, str):
        raw = obj.encode()
        return b"\xdb" + struct.pack(">I", len(raw)) + raw
    if isinstance(obj, list | tuple):
        return b"\xdd" + struct.pack(">I", len(obj)) + b"".join(_msgpack_map(x) for x in obj)
    if isinstance(obj, dict):
        return b"\xdf" + struct.pack(">I", len(obj)) + b"".join(
            _msgpack_map(str(k)) + _msgpack_map(v) for k, v in obj.items())
    return _msgpack_map(str(obj))


def _rlimits(limits: dict[str, int], sandbox: bool) -> dict[str, int]:
    applied: dict[str, int] = {}
    table = {"cpu_s": resource.RLIMIT_CPU, "as_bytes": resource.RLIMIT_AS,
             "nofile": resource.RLIMIT_NOFILE}
    for name, value in limits.items():
        if name in table and value:
            # CPU: the soft limit sends SIGXCPU (the runtime reports a resource-limit
            # violation); the hard one, a second later, kills a child that ignores it.
            # (With soft == hard the kernel sends SIGKILL at once, which reads as a crash.)
            hard = value + 1 if name == "cpu_s" else value
            resource.setrlimit(table[name], (value, hard))
            applied[name] = value
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    applied["core"] = 0
    if sandbox:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        applied["fsize"] = 0
    return applied


def _landlock(read_paths: list[str], libc: ctypes.CDLL) -> dict[str, object]:
    abi = libc.syscall(_SYS_CREATE, None, 0, 1)
    if abi < 1:
        return {"landlock_abi": 0}
    fs = _FS_BY_ABI.get(min(abi, 5) if abi != 4 else 3, _FS_V1)
    net = 3 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP
    scoped = 3 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
    attr = struct.pack("<QQQ", fs, net, scoped)[: 24 if abi >= 6 else 16 if abi >= 4 else 8]
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_SYS_CREATE, buf, len(attr), 0)
    if ruleset < 0:
        return {"landlock_abi": abi, "error": os.strerror(ctypes.get_errno())}
    allowed = []
    for path in read_paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        access = (_READ_DIR if os.path.isdir(path) else _READ_FILE) & fs
        rule = ctypes.create_string_buffer(struct.pack("<Qi", access, fd), 12)
        if libc.syscall(_SYS_ADD_RULE, ruleset, 1, rule, 0) == 0:
            allowed.append(path)
        os.close(fd)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        return {"landlock_abi": abi, "error": "prctl(PR_SET_NO_NEW_PRIVS) failed"}
    if libc.syscall(_SYS_RESTRICT, ruleset, 0) != 0:
        return {"landlock_abi": abi, "error": os.strerror(ctypes.get_errno())}
    os.close(ruleset)
    return {"landlock_abi": abi, "landlock_fs": True, "landlock_net_tcp": bool(net),
            "landlock_scoped": bool(scoped), "no_new_privs": True, "read_paths": allowed}


def _sandbox(read_paths: list[str]) -> dict[str, object]:
    libc = ctypes.CDLL(None, use_errno=True)
    flags = _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
    netns = libc.unshare(flags) == 0
    report: dict[str, object] = {"net_namespace": netns}
    report.update(_landlock(read_paths, libc))
    if not report.get("landlock_fs"):
        report["refused"] = "Landlock is unavailable on this kernel: no filesystem sandbox"
    elif not netns and not report.get("landlock_net_tcp"):
        report["refused"] = "neither a network namespace nor Landlock TCP rules are available"
    return report


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    command = argv[3:] if argv[2:3] == ["--"] else argv[2:]
    codec = str(config.get("codec", "json"))
    sandbox = bool(config.get("sandbox"))
    report: dict[str, object] = {"sandbox": sandbox,
                                 "rlimits": _rlimits(dict(config.get("rlimits") or {}), sandbox)}
    if sandbox:
        report.update(_sandbox([str(p) for p in config.get("read_paths") or ()]))
    os.write(1, _frame({"type": "sandbox", "enforced": report}, codec))
    if "refused" in report:
        return _EXIT_REFUSED
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(2, f"cannot execute {command[0]}: {exc}\n".encode())
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
