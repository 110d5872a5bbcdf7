"""TorchScript files are code: screen an archive before ``torch.jit.load``, and the loaded
graphs before anything runs.

A TorchScript ``.pt`` is a zip holding Python-like source (``<root>/code/**/*.py``) that
``torch.jit.load`` compiles, pickles (``data.pkl``, ``constants.pkl``) that its own unpickler
reads (building the classes that source defines, and calling their ``__setstate__``), and raw
tensor storages. The source may call any operator PyTorch has registered, including ones that
read or write files (``torch.from_file``), and ``__setstate__`` runs during the load itself.

``screen_archive`` reads the source with ``ast`` and the pickles with ``pickletools`` (nothing is
compiled or run) and refuses anything outside an allow-list of tensor operators: the names the
serialized code of torchvision's resnet18, mobilenet_v3_small, efficientnet_b0 and vit_b_16, the
demo EfficientNet-Lite0 (traced) and the test networks use, plus close relatives of the same kind
(other convolutions, pooling, activations, norms, shape operations). ``screen_graphs`` checks the
compiled graphs of a loaded module against the same list (every method, every block), so a
method resolved by the compiler to another operator is caught before a forward pass.

The lists (in ``torchscript_allowlist``) are literals on purpose: an operator registered at run
time by some library is not allowed because it exists.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import PurePosixPath

from .torchscript_allowlist import BUILTIN_NAMES, GRAPH_NODES, MATH_NAMES, PRIM_CALLS, TENSOR_OPS
from .untrusted import cut, quote

# roots of dotted names that the importer resolves globally
_ROOTS = ("torch", "ops", "__torch__", "CONSTANTS", "math")

_NODES = tuple(
    getattr(ast, name)
    for name in (
        "Module",
        "ClassDef",
        "FunctionDef",
        "arguments",
        "arg",
        "Assign",
        "AnnAssign",
        "AugAssign",
        "Expr",
        "Return",
        "Pass",
        "If",
        "For",
        "While",
        "Break",
        "Continue",
        "Assert",
        "Attribute",
        "Call",
        "keyword",
        "Name",
        "Constant",
        "List",
        "Tuple",
        "Dict",
        "Subscript",
        "Slice",
        "UnaryOp",
        "BinOp",
        "BoolOp",
        "Compare",
        "IfExp",
        "Load",
        "Store",
        "Add",
        "Sub",
        "Mult",
        "Div",
        "FloorDiv",
        "Mod",
        "Pow",
        "USub",
        "UAdd",
        "Not",
        "Invert",
        "And",
        "Or",
        "Eq",
        "NotEq",
        "Lt",
        "LtE",
        "Gt",
        "GtE",
        "Is",
        "IsNot",
        "In",
        "NotIn",
        "BitAnd",
        "BitOr",
        "BitXor",
        "LShift",
        "RShift",
        "MatMult",
    )
)

# what a name does, for the message (the refusal does not depend on it)
_FILES = (
    "file",
    "load",
    "save",
    "open",
    "read",
    "write",
    "mmap",
    "path",
    "dir",
    "unlink",
    "remove",
    "pickle",
    "storage",
    "library",
)
_PROCESS = ("system", "popen", "spawn", "exec", "fork", "wait", "subprocess", "process", "thread", "kill")
_NETWORK = (
    "socket",
    "connect",
    "url",
    "http",
    "download",
    "rpc",
    "remote",
    "distributed",
    "send",
    "recv",
    "c10d",
    "store",
)

MAX_CODE_BYTES = 64 << 20  # all serialized source together
MAX_PICKLE_BYTES = 256 << 20  # one pickle (data.pkl holds names and storage keys, not tensor data)
MAX_MEMBERS = 200_000
_PICKLE_GLOBALS = frozenset(
    {
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "collections.OrderedDict",
        "torch.jit._pickle.build_intlist",
        "torch.jit._pickle.build_doublelist",
        "torch.jit._pickle.build_boollist",
        "torch.jit._pickle.build_tensorlist",
        "torch.jit._pickle.build_genericlist",
        "torch.jit._pickle.restore_type_tag",
    }
) | {
    f"torch.{kind}Storage"
    for kind in (
        "Float",
        "Double",
        "Half",
        "BFloat16",
        "Long",
        "Int",
        "Short",
        "Char",
        "Byte",
        "Bool",
        "ComplexFloat",
        "ComplexDouble",
        "Untyped",
    )
}


class Refused(ValueError):
    """The archive or graph uses something outside the allow-list; the text says what."""


def _what(name: str) -> str:
    low = name.lower()
    if low.startswith(("ops.", "torch.ops.")) and not low.startswith(("ops.aten.", "ops.prim.")):
        return "is a custom operator from a compiled library, not a tensor operation this app knows"
    if any(k in low for k in _NETWORK):
        return "talks to the network"
    if any(k in low for k in _PROCESS):
        return "starts processes or threads on the server"
    if any(k in low for k in _FILES):
        return "reads or writes files on the server"
    if low.endswith(("print", ".print")):
        return "writes to the server's output"
    if "classes" in low:
        return "is a compiled C++ class, not a tensor operation"
    return "is not one of the tensor operations this app allows in a model"


def _refuse(where: str, name: str, verb: str = "calls") -> Refused:
    return Refused(
        f"{where}: this TorchScript model {verb} {cut(name)}, which {_what(name)}; "
        "it was not loaded. Nothing in it was run."
    )


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for an attribute chain rooted at a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _locals(function: ast.FunctionDef) -> set[str]:
    names = {a.arg for a in (*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs)}
    for extra in (function.args.vararg, function.args.kwarg):
        if extra is not None:
            names.add(extra.arg)
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


class _Checker:
    """Checks the parsed source of every code file against the lists above."""

    def __init__(self, where: str, defined: set[str], methods: set[str]):
        self.where, self.defined, self.methods = where, defined, methods

    def global_ref(self, name: str, called: bool) -> None:
        root, _, rest = name.partition(".")
        verb = "calls" if called or root in ("torch", "ops") else "uses"
        if root == "torch":
            head = rest.split(".", 1)[0]
            if rest != head or head not in TENSOR_OPS:
                raise _refuse(self.where, name, verb)
        elif root == "ops":
            space, _, op = rest.partition(".")
            ok = (space == "aten" and op in TENSOR_OPS) or (space == "prim" and op in PRIM_CALLS)
            if not ok and not (op == "" and space in ("aten", "prim") and not called):
                raise _refuse(self.where, name, verb)
        elif root == "__torch__":
            if not self._is_defined(name):
                raise _refuse(self.where, name, verb)
        elif root == "CONSTANTS":
            if called or not rest.startswith("c") or not rest[1:].isdigit():
                raise _refuse(self.where, name, verb)
        elif root == "math":
            if rest not in MATH_NAMES:
                raise _refuse(self.where, name, verb)
        else:
            raise _refuse(self.where, name, verb)

    def _is_defined(self, name: str) -> bool:
        if name in self.defined:
            return True
        parent, _, _ = name.rpartition(".")
        if parent in self.defined:  # a member of a defined class (an enum value)
            return True
        return any(d.startswith(name + ".") for d in self.defined)  # a package on the way

    def check(self, tree: ast.Module, module: str) -> None:
        for node in ast.walk(tree):
            if not isinstance(node, _NODES):
                raise Refused(
                    f"{self.where}: the TorchScript code uses a construct this app does not "
                    f"check ({type(node).__name__}); it was not loaded. Nothing in it was run."
                )
        for top in tree.body:
            if isinstance(top, ast.ClassDef):
                for base in top.bases:
                    self.expression(base, set())
                for item in top.body:
                    if isinstance(item, ast.FunctionDef):
                        self.function(item, f"{module}.{top.name}")
                    elif isinstance(item, (ast.AnnAssign, ast.Assign, ast.Pass, ast.Expr)):
                        self.expression(item, {"__annotations__"})  # __annotations__["0"] = type
                    else:
                        raise Refused(
                            f"{self.where}: the TorchScript class {top.name} holds a "
                            f"{type(item).__name__} statement this app does not check; it was "
                            "not loaded. Nothing in it was run."
                        )
            elif isinstance(top, ast.FunctionDef):
                self.function(top, module)
            elif isinstance(top, (ast.Assign, ast.AnnAssign)) and all(
                isinstance(n, (ast.Name, ast.Constant, ast.Store, ast.Load, ast.Assign, ast.AnnAssign))
                for n in ast.walk(top)
            ):
                continue  # op_version_set = 1
            else:
                raise Refused(
                    f"{self.where}: the TorchScript code has a top-level {type(top).__name__} "
                    "statement this app does not check; it was not loaded. Nothing in it was run."
                )

    def function(self, function: ast.FunctionDef, owner: str) -> None:
        local = _locals(function)
        if local & set(_ROOTS):
            raise Refused(
                f"{self.where}: the TorchScript function {function.name} reassigns the name "
                f"{sorted(local & set(_ROOTS))[0]}; it was not loaded. Nothing in it was run."
            )
        if function.name == "__setstate__":
            self.setstate(function, owner)
        for decorator in function.decorator_list:
            self.expression(decorator, local)
        self.expression(function.args, local)
        if function.returns is not None:
            self.expression(function.returns, local)
        for statement in function.body:
            self.expression(statement, local)

    def setstate(self, function: ast.FunctionDef, owner: str) -> None:
        """``__setstate__`` runs while the file loads: allow only storing the saved values."""

        def plain(statement):
            return all(
                isinstance(
                    n,
                    (
                        ast.Name,
                        ast.Constant,
                        ast.Subscript,
                        ast.Tuple,
                        ast.Load,
                        ast.Store,
                        ast.Attribute,
                        ast.Slice,
                        ast.UnaryOp,
                        ast.USub,
                    ),
                )
                for n in ast.walk(statement)
                if n is not statement
            )

        for statement in function.body:
            if isinstance(statement, ast.Assign) and plain(statement):
                continue
            if isinstance(statement, ast.Return) and plain(statement):
                continue
            if isinstance(statement, ast.Pass):
                continue
            call = next((n for n in ast.walk(statement) if isinstance(n, ast.Call)), None)
            name = _dotted(call.func) if call is not None else None
            calls = f" (it calls {cut(name)})" if name else ""
            raise Refused(
                f"{self.where}: this TorchScript model's class {cut(owner.rsplit('.', 1)[-1])} has a "
                "__setstate__ method "
                f"that does more than store its saved values{calls}; it would run while the file "
                "loads, so it was not loaded. Nothing in it was run."
            )

    def expression(self, node: ast.AST, local: set[str]) -> None:
        """Walk ``node``: every dotted name rooted outside the function's locals is checked as a
        whole; every method called on a value must be an allowed operator or a method the
        archive defines."""
        stack = [(node, False)]
        while stack:
            current, called = stack.pop()
            if isinstance(current, ast.Call):
                func = current.func
                dotted = _dotted(func)
                if dotted is not None and dotted.split(".", 1)[0] not in local:
                    if "." in dotted:
                        self.global_ref(dotted, called=True)
                    elif dotted not in BUILTIN_NAMES:
                        raise _refuse(self.where, dotted)
                elif isinstance(func, ast.Attribute):
                    name = func.attr
                    if name not in TENSOR_OPS and name not in self.methods:
                        raise _refuse(self.where, name)
                    stack.append((func.value, False))
                else:
                    stack.append((func, True))
                stack.extend((a, False) for a in current.args)
                stack.extend((k.value, False) for k in current.keywords)
                continue
            if isinstance(current, ast.Attribute):
                dotted = _dotted(current)
                if dotted is not None and dotted.split(".", 1)[0] not in local:
                    self.global_ref(dotted, called)
                    continue
                stack.append((current.value, False))
                continue
            if isinstance(current, ast.Name):
                if isinstance(current.ctx, ast.Store):
                    continue
                if current.id not in local and current.id not in BUILTIN_NAMES:
                    raise _refuse(self.where, current.id, "uses")
                continue
            stack.extend((child, False) for child in ast.iter_child_nodes(current))


def _read(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, where: str, what: str) -> bytes:
    """A member's bytes, counting real bytes while inflating (the header's size may lie)."""
    with z.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Refused(
            f"{where}: {what} in the TorchScript file is larger than this app checks; it was "
            "not loaded. Nothing in it was run."
        )
    return data


def _module_name(rel: str) -> str:
    """code/__torch__/a/b.py -> __torch__.a.b"""
    return ".".join(PurePosixPath(rel[len("code/") : -len(".py")]).parts)


def screen_archive(path, where: str) -> None:
    """Refuse a TorchScript archive whose code or pickles use anything outside the allow-lists.
    Reads the archive only: nothing is compiled, unpickled or run.

    Raises:
        Refused (a ValueError): with the operator, class or file part named.
    """
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise Refused(f"{where}: the TorchScript file is damaged ({quote(str(err), 120)}).") from None
    with z:
        infos = z.infolist()
        _check_layout(infos, where)
        sources = _read_sources(z, infos, where)
        defined = _check_code(sources, where)
        _check_pickles(z, infos, defined, where)


def _check_layout(infos: list[zipfile.ZipInfo], where: str) -> None:
    """Refuse too many parts, or parts outside one top folder as torch.jit.save writes them."""
    if len(infos) > MAX_MEMBERS:
        raise Refused(
            f"{where}: the TorchScript file has {len(infos):,} parts, more than this app "
            f"checks ({MAX_MEMBERS:,}); it was not loaded. Nothing in it was run."
        )
    roots = {i.filename.split("/", 1)[0] for i in infos}
    if len(roots) != 1 or any("/" not in i.filename for i in infos):
        raise Refused(
            f"{where}: the TorchScript file is not laid out as torch.jit.save writes it "
            "(one top folder); it was not loaded. Nothing in it was run."
        )


def _read_sources(z: zipfile.ZipFile, infos: list[zipfile.ZipInfo], where: str) -> dict:
    """{part name: parsed ``ast``} of the serialized code; refuses odd part names, code that
    does not parse, too much code, and anything else among the code."""
    sources, total = {}, 0
    for info in infos:
        rel = info.filename.split("/", 1)[1]
        if info.is_dir() or not rel:
            continue
        if ".." in rel.split("/") or "\\" in rel:
            raise Refused(
                f"{where}: the TorchScript file has a part named {quote(rel)}; it was not "
                "loaded. Nothing in it was run."
            )
        if rel.startswith("code/") and rel.endswith(".py"):
            data = _read(
                z, info, MAX_CODE_BYTES - total, where, f"the code ({MAX_CODE_BYTES >> 20} MiB in all)"
            )
            total += len(data)
            try:
                sources[rel] = ast.parse(data.decode("utf-8"), filename=rel)
            except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
                raise Refused(
                    f"{where}: the TorchScript code in {quote(rel)} cannot be checked (it "
                    "is not plain serialized TorchScript); it was not loaded. Nothing in it "
                    "was run."
                ) from None
        elif rel.endswith((".pkl", ".debug_pkl")):
            continue
        elif rel.startswith("code/"):
            raise Refused(
                f"{where}: the TorchScript file holds {quote(rel)} among its code, which "
                "this app does not check; it was not loaded. Nothing in it was run."
            )
    return sources


def _check_code(sources: dict, where: str) -> set[str]:
    """Check every module's code against the allow-lists; the classes and functions it defines."""
    defined, methods = set(), set()
    for rel, tree in sources.items():
        module = _module_name(rel)
        for top in tree.body:
            if isinstance(top, (ast.ClassDef, ast.FunctionDef)):
                defined.add(f"{module}.{top.name}")
            if isinstance(top, ast.ClassDef):
                methods.update(i.name for i in top.body if isinstance(i, ast.FunctionDef))
    checker = _Checker(where, defined, methods)
    for rel, tree in sorted(sources.items()):
        checker.check(tree, _module_name(rel))
    return defined


def _check_pickles(z: zipfile.ZipFile, infos: list[zipfile.ZipInfo], defined: set[str], where: str) -> None:
    """The pickles: the classes the code defines, tensors, and torch's list helpers only."""
    from ._pickles import pickle_globals as _pickle_globals  # one pickle reader for every model format

    for info in infos:
        rel = info.filename.split("/", 1)[1]
        if not rel.endswith((".pkl", ".debug_pkl")):
            continue
        names = _pickle_globals(_read(z, info, MAX_PICKLE_BYTES, where, quote(rel)))
        if names is None:
            raise Refused(
                f"{where}: {quote(rel)} in the TorchScript file is damaged (not a pickle); "
                "it was not loaded. Nothing in it was run."
            )
        for name in names:
            if name in _PICKLE_GLOBALS or (
                name.startswith("__torch__.") and name in defined and not rel.endswith(".debug_pkl")
            ):
                continue
            raise _refuse(where, name, "uses")


def _graph_kinds(graph) -> list[str]:
    kinds, blocks = [], [graph]
    while blocks:
        block = blocks.pop()
        for node in block.nodes():
            kinds.append(node.kind())
            blocks.extend(node.blocks())
    return kinds


def screen_graphs(module, where: str) -> None:
    """Refuse a loaded TorchScript module whose compiled graphs (every method of every submodule,
    calls inlined, hooks included) use a node outside the allow-lists. Runs none of them."""
    for _, sub in module.named_modules():
        c = sub._c
        graphs = [c._get_method(name).inlined_graph for name in c._method_names()]
        for getter in ("_get_forward_hooks", "_get_forward_pre_hooks"):
            hooks = getattr(c, getter, lambda: [])()
            if hooks:
                raise Refused(
                    f"{where}: this TorchScript model has compiled forward hooks, which this app "
                    "does not check; it was not loaded. Nothing in it was run."
                )
        for graph in graphs:
            for kind in _graph_kinds(graph):
                space, _, op = kind.partition("::")
                if (space == "aten" and op in TENSOR_OPS) or (space == "prim" and op in GRAPH_NODES):
                    continue
                raise _refuse(where, kind)
