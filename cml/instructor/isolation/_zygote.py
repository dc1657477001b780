"""The kernel zygote of :mod:`cml.instructor.isolation.zygote`: ``python _zygote.py STATUS_FD MODULE ...``.

Imports what ``ipykernel_launcher`` imports, then MODULE ..., and says how many threads it runs (forking is
safe with one). Then reads requests, one JSON line each (``arguments`` of ipykernel_launcher, ``cwd``,
``environment``, and ``sandbox``: a policy file for :func:`cml.instructor.isolation.sandbox.enter`, or null), forks
a kernel for each and answers its pid. When a kernel ends, its pid and wait status go to the pipe STATUS_FD, as a
line ``PID STATUS``. Standard library only, and run as a script, so that a kernel forked from here holds no module
a fresh ``python -m ipykernel_launcher`` would not have loaded by its first answer (the sandbox's module is loaded
by path in the kernel's own process, and forgotten before the kernel starts).
"""

import importlib
import importlib.util
import json
import os
import signal
import sys

_SANDBOX_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox.py")


def _reply(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _enter_sandbox(policy_file, arguments):
    """Apply the sandbox policy (see sandbox.enter); returns the kernel's environment. Leaves no module behind."""
    loaded = set(sys.modules)
    spec = importlib.util.spec_from_file_location("_cml_kernel_sandbox", _SANDBOX_SCRIPT)
    sandbox = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = sandbox
    try:
        spec.loader.exec_module(sandbox)
        return sandbox.enter(policy_file, sandbox._connection_file(arguments))
    finally:
        for name in set(sys.modules) - loaded:
            del sys.modules[name]


def _become_kernel(request, started):
    """In the forked child: be what ``python -m ipykernel_launcher ARGUMENTS`` run in ``cwd`` would be, and run."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.write(started, b"1")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # the kernel process's own output (not the cells'), as its log: to the zygote's stderr
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the zygote's pipes (requests, statuses) are not the kernel's
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["environment"])
    if request.get("sandbox"):
        environment = _enter_sandbox(request["sandbox"], request["arguments"])
        os.environ.clear()
        os.environ.update(environment)
    # Generators seeded from the OS once per process would otherwise repeat the zygote's state in every kernel.
    if "random" in sys.modules:
        sys.modules["random"].seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    sys.argv = [importlib.util.find_spec("ipykernel_launcher").origin, *request["arguments"]]
    from ipykernel import kernelapp

    try:
        kernelapp.launch_new_instance()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def _reap(status_fd):
    """SIGCHLD: reap every ended kernel and report its wait status."""
    def handler(signum, frame):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            try:
                os.write(status_fd, f"{pid} {status}\n".encode())
            except OSError:
                pass
    return handler


def main(status_fd, modules):
    del sys.path[0]  # this script's folder; ipykernel_launcher likewise removes its working folder
    try:
        importlib.import_module("runpy")  # what ``python -m`` loads
        importlib.import_module("ipykernel.kernelapp")
        for name in modules:
            importlib.import_module(name)
    except Exception as error:  # noqa: BLE001  (reported: the parent then starts kernels the ordinary way)
        _reply({"error": f"{type(error).__name__}: {error}"})
        return 1
    _reply({"threads": len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None})
    signal.signal(signal.SIGCHLD, _reap(status_fd))
    for line in sys.stdin:
        request = json.loads(line)
        ready, started = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready)
            return _become_kernel(request, started)
        os.close(started)
        os.read(ready, 1)  # the kernel has its own session (and process group) before anyone may signal it
        os.close(ready)
        _reply({"pid": pid})
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
