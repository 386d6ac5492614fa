"""The part of `minildm grade` that runs inside the grading kernel, around the student's cells.

The grader (minildm/course/grader.py) calls three functions here through Jupyter's
`user_expressions`, which are evaluated without passing through IPython's input transformers:

* `start(config)` before the first student cell: checks that `minildm` imports from the
  installed package, imports what the tests import, remembers every function of torch,
  NumPy, minildm and IPython's execution machinery, replaces the taught reference functions
  (the minildm functions the exercises rebuild) by stubs, and installs an audit hook that
  refuses to read the instructor's files, to write outside the submission's temporary
  folder, or to start programs.
* `before_test(grade_id, source)` before each graded test cell: reports (and undoes) any
  change to what `start` remembered, and lets the stubs answer for calls made by this cell.
* `after_test(grade_id, names)` after it: reports changes made while the test ran, and
  checks that the names the test imported still mean what it imported.

While student code runs, calling a taught reference raises `ReferenceCallError` ("implement
this yourself"); the same stub answers with the real function when called from the test cell
or from inside minildm. Tampering is sticky: once reported, every later check reports it.

This is tamper evidence, not a sandbox: code in the same process can still defeat it with
enough effort (ctypes, rewriting this module through the garbage collector). Run the grader
in a container or as a separate user for high-stakes grading (see the README).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

WATCHED_MODULES = ("builtins", "torch", "torch.nn.functional", "torch.testing", "numpy", "numpy.testing")
SHELL_METHODS = ("run_cell", "run_cell_async", "run_ast_nodes", "run_code", "transform_cell", "transform_ast",
                 "should_run_async", "showtraceback", "_showtraceback", "user_expressions", "ev", "ex")
KERNEL_METHODS = ("do_execute", "execute_request", "send_response", "_publish_execute_input")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {  # audit event -> positions of its path arguments, and whether it changes the file system
    "os.listdir": ((0,), False), "os.scandir": ((0,), False), "os.remove": ((0,), True),
    "os.rmdir": ((0,), True), "os.mkdir": ((0,), True), "os.rename": ((0, 1), True),
    "os.link": ((0, 1), True), "os.symlink": ((0, 1), True), "os.truncate": ((0,), True),
    "os.chmod": ((0,), True), "os.chown": ((0,), True), "os.utime": ((0,), True),
    "shutil.rmtree": ((0,), True), "shutil.copyfile": ((0, 1), True), "shutil.move": ((0, 1), True),
}
_PROGRAM_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile")


class ReferenceCallError(NotImplementedError):
    """A submission called the minildm function its exercise asks it to write."""


class GuardError(RuntimeError):
    """The grading kernel is not set up the way the grader needs (names what is wrong)."""


def _is_remembered(value: object) -> bool:
    return callable(value) or isinstance(value, (types.ModuleType, type))


class _Guard:
    """What `start` remembered: namespaces, shell machinery, stubs, and the tampering found so far."""

    def __init__(self, config: dict) -> None:
        self.package_root = str(Path(config["package_root"]).resolve())
        self.workdir = str(Path(config["workdir"]).resolve())
        self.taught: dict[str, Callable] = {}  # dotted name -> the real function
        self.stubs: dict[int, Callable] = {}  # id(real function) -> its stub
        self.namespaces: dict[str, tuple[types.ModuleType, dict]] = {}
        self.classes: list[tuple[type, dict]] = []
        self.lists: list[tuple[str, list, list]] = []
        self.instances: list[tuple[str, object, set, tuple[str, ...]]] = []
        self.test_files: set[str] = set()
        self.bound: dict[str, object] = {}  # dotted name a test imports -> the object it meant at start
        self.tampered: list[str] = []
        self.reported = 0

    # ------------------------------------------------------------ remembering

    def remember_module(self, name: str) -> None:
        module = sys.modules.get(name)
        if module is not None:
            self.namespaces[name] = (module, {k: v for k, v in vars(module).items() if _is_remembered(v)})

    def remember_shell(self, shell) -> None:
        manager = shell.input_transformer_manager
        self.lists = [(f"IPython {name}", lst, list(lst)) for name, lst in [
            ("input_transformers_cleanup", shell.input_transformers_cleanup),
            ("input_transformers_post", shell.input_transformers_post),
            ("ast_transformers", shell.ast_transformers),
            ("input transformer manager cleanup_transforms", manager.cleanup_transforms),
            ("input transformer manager line_transforms", manager.line_transforms),
            ("input transformer manager token_transformers", manager.token_transformers),
            *((f"'{event}' event callbacks", callbacks) for event, callbacks in shell.events.callbacks.items()),
        ]]
        self.instances = [("the IPython shell", shell, set(vars(shell)), SHELL_METHODS)]
        kernel = getattr(shell, "kernel", None)
        if kernel is not None:
            self.instances.append(("the kernel", kernel, set(vars(kernel)), KERNEL_METHODS))
        for owner in {*type(shell).__mro__, *(type(kernel).__mro__ if kernel is not None else ())}:
            if owner is not object:
                self.classes.append((owner, {k: v for k, v in vars(owner).items() if _is_remembered(v)}))
        self.shell_compile = shell.compile

    def remember_tensor(self) -> None:
        torch = sys.modules.get("torch")
        if torch is not None:
            for cls in (torch.Tensor, torch._C.TensorBase):
                self.classes.append((cls, {k: v for k, v in vars(cls).items() if _is_remembered(v)}))

    # ------------------------------------------------------------ stubs for the taught references

    def install_stubs(self, dotted_names: list[str]) -> None:
        for dotted in dotted_names:
            real = _resolve(dotted)
            if not callable(real) or isinstance(real, type):
                continue  # a name that does not import fails in the test cell itself
            self.taught[dotted] = real
            self.stubs[id(real)] = self.make_stub(dotted, real)
        for name, module in list(sys.modules.items()):
            if name == "minildm" or name.startswith("minildm."):
                for attr, value in list(vars(module).items()):
                    if id(value) in self.stubs and any(value is real for real in self.taught.values()):
                        setattr(module, attr, self.stubs[id(value)])
                self.remember_module(name)

    def make_stub(self, dotted: str, real: Callable) -> Callable:
        package_root, test_files = self.package_root, self.test_files

        @functools.wraps(real)
        def stub(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller in test_files or caller.startswith(package_root):
                return real(*args, **kwargs)
            raise ReferenceCallError(f"{dotted} is what this exercise asks you to write; implement it yourself "
                                     "instead of calling minildm's (the grader blocks it while your code runs)")

        del stub.__wrapped__  # the real function stays out of reach of `inspect.unwrap`
        return stub

    # ------------------------------------------------------------ checks

    def check(self) -> None:
        """Record (and undo) every change to what was remembered."""
        for name, (module, saved) in self.namespaces.items():
            if sys.modules.get(name) is not module:
                self.tampered.append(f"module {name} was replaced in sys.modules")
                sys.modules[name] = module
            current = vars(module)
            for key, value in saved.items():
                if current.get(key) is not value:
                    self.tampered.append(f"{name}.{key} was replaced")
                    setattr(module, key, value)
        for cls, saved in self.classes:
            current = vars(cls)
            for key, value in saved.items():
                if current.get(key) is not value:
                    self.tampered.append(f"{cls.__module__}.{cls.__qualname__}.{key} was replaced")
                    try:
                        setattr(cls, key, value)
                    except (TypeError, AttributeError):
                        pass
            for key in set(current) - set(saved):
                if key in SHELL_METHODS or key in KERNEL_METHODS:
                    self.tampered.append(f"{cls.__qualname__}.{key} was added")
                    delattr(cls, key)
        for what, lst, saved in self.lists:
            # libraries may add event callbacks (matplotlib's inline backend does); code from the notebook may not
            added = [f for f in lst if all(f is not s for s in saved)] if "event" in what else []
            library = [f for f in added if not self.from_notebook(f)]
            if len(lst) != len(saved) + len(library) or any(all(f is not x for x in lst) for f in saved):
                self.tampered.append(f"{what} were changed (input transformers or hooks added by the notebook)")
                lst[:] = saved + library
        for what, obj, saved_keys, methods in self.instances:
            for key in methods:
                if key in vars(obj) and key not in saved_keys:
                    self.tampered.append(f"{what}'s {key} was replaced")
                    delattr(obj, key)
        shell = get_ipython_shell()
        if shell is not None and shell.compile is not self.shell_compile:
            self.tampered.append("the IPython compiler was replaced")
            shell.compile = self.shell_compile

    def from_notebook(self, function: Callable) -> bool:
        """True when `function` was written in a cell or in a file of the submission's folder."""
        function = getattr(function, "func", function)  # functools.partial
        code = getattr(getattr(function, "__func__", function), "__code__", None)
        if code is None:
            return False
        path = os.path.realpath(code.co_filename)
        return not os.path.isabs(code.co_filename) or path.startswith(self.workdir + os.sep)

    def report(self) -> str:
        """JSON: {"ok": bool, "new": [tampering found since the last report]}."""
        new = self.tampered[self.reported:]
        self.reported = len(self.tampered)
        return json.dumps({"ok": not self.tampered, "new": sorted(set(new), key=new.index)})


_GUARD: _Guard | None = None


def get_ipython_shell():
    """The running IPython shell, or None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _audit_hook(guard: _Guard, workdir: str, forbidden: list[str]) -> Callable:
    """An audit hook (PEP 578): reads of `forbidden`, writes outside `workdir`, programs -> PermissionError."""
    busy = [False]
    realpath, getcwd, join = os.path.realpath, os.getcwd, os.path.join
    readable = [guard.package_root, realpath(sys.prefix), realpath(sys.base_prefix)]  # minildm, the interpreter

    def inside(path: str, root: str) -> bool:
        return path == root or path.startswith(root + os.sep)

    def resolve(path) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str):
            return None  # a file descriptor: checked when it was opened
        return realpath(join(getcwd(), path))

    def refuse(message: str) -> None:
        guard.tampered.append(message)
        raise PermissionError(message)

    def hook(event: str, args: tuple) -> None:
        if busy[0]:
            return
        if event in _PROGRAM_EVENTS:
            raise PermissionError(f"grading does not allow starting programs ({event})")
        if event == "open":
            paths, writes = (args[0],), (isinstance(args[1], str) and any(c in args[1] for c in "wax+")) or (
                isinstance(args[2], int) and args[2] & _WRITE_FLAGS)
        elif event in _PATH_EVENTS:
            positions, writes = _PATH_EVENTS[event]
            paths = tuple(args[i] for i in positions if i < len(args))
        else:
            return
        busy[0] = True
        try:
            for raw in paths:
                path = resolve(raw)
                if path is None:
                    continue
                if any(inside(path, root) for root in forbidden) and not any(inside(path, r) for r in readable):
                    refuse(f"the notebook tried to open files it may not read: the instructor's or other "
                           f"submissions' ({event} {path})")
                if writes and not (inside(path, workdir) or path == os.devnull):
                    refuse(f"the notebook tried to change files outside its own folder ({event} {path})")
        finally:
            busy[0] = False

    return hook


def start(config_json: str) -> str:
    """Set up the guard in this kernel (see the module docstring); return the first report."""
    global _GUARD
    config = json.loads(config_json)
    import minildm

    found = str(Path(minildm.__file__).resolve().parent)
    if found != str(Path(config["package_root"]).resolve()):
        raise GuardError(f"the grading kernel imports minildm from {found}, not from the installed package "
                         f"{config['package_root']}; a folder named minildm next to the notebook or another "
                         "installation shadows it")
    if _GUARD is not None:
        raise GuardError("the grading guard is already running in this kernel")
    for dotted in config.get("imports", []):
        _resolve(dotted)  # a name that does not import fails in the test cell itself
    guard = _Guard(config)
    guard.install_stubs(config.get("taught", []))
    guard.bound = {dotted: _resolve(dotted) for dotted in config.get("imports", [])}
    for name in (*WATCHED_MODULES, __name__, "minildm.course", "minildm.course.notebooks"):
        guard.remember_module(name)
    guard.remember_tensor()
    shell = get_ipython_shell()
    if shell is not None:
        guard.remember_shell(shell)
    sys.addaudithook(_audit_hook(guard, str(Path(config["workdir"]).resolve()),
                                 [str(Path(p).resolve()) for p in config.get("forbidden", [])]))
    _GUARD = guard
    return guard.report()


def before_test(source: str) -> str:
    """Check before a graded test cell; calls to the taught references from `source` get the real ones."""
    if _GUARD is None:
        return json.dumps({"ok": False, "new": ["the grading guard was not started"]})
    _GUARD.check()
    shell = get_ipython_shell()
    if shell is not None:
        _GUARD.test_files.add(shell.compile.get_code_name(source, source, 0))
    return _GUARD.report()


def after_test(names: dict[str, str]) -> str:
    """Check after a graded test cell; `names` maps names the test imported to what they should be."""
    if _GUARD is None:
        return json.dumps({"ok": False, "new": ["the grading guard was not started"]})
    _GUARD.check()
    shell = get_ipython_shell()
    namespace = shell.user_ns if shell is not None else {}
    for name, dotted in names.items():
        expected = _GUARD.bound.get(dotted)
        if expected is not None and name in namespace and namespace[name] is not expected:
            _GUARD.tampered.append(f"the test's name {name!r} ({dotted}) was rebound while it ran")
    return _GUARD.report()


def _resolve(dotted: str) -> object | None:
    """What `import`/`from ... import` of `dotted` gives right now (None if it does not import)."""
    try:
        return importlib.import_module(dotted)
    except ImportError:
        pass
    module_name, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None

