"""The kernel zygote of :mod:`cml.instructor.isolation.zygote`: ``python _zygote.py MODULE ...``.

Imports what ``ipykernel_launcher`` imports, then MODULE ..., and says how many threads it runs (forking is
safe with one). Then reads requests, one JSON line each (``arguments`` of ipykernel_launcher, ``cwd``,
``environment``), forks a kernel for each and answers its pid. Standard library only, and run as a script,
so that a kernel forked from here holds no module a fresh ``python -m ipykernel_launcher`` would not have
loaded by its first answer.
"""

import importlib
import importlib.util
import json
import os
import signal
import sys


def _reply(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _become_kernel(request, started):
    """In the forked child: be what ``python -m ipykernel_launcher ARGUMENTS`` run in ``cwd`` would be, and run."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.write(started, b"1")
    os.close(started)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # the kernel process's own output (not the cells'), as its log: to the zygote's stderr
    os.close(devnull)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["environment"])
    if "numpy" in sys.modules:  # numpy seeds its global generator from the OS when imported, once per process
        sys.modules["numpy"].random.seed()
    sys.argv = [importlib.util.find_spec("ipykernel_launcher").origin, *request["arguments"]]
    from ipykernel import kernelapp

    try:
        kernelapp.launch_new_instance()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def main(modules):
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
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels are reaped as they end
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
    sys.exit(main(sys.argv[1:]))
