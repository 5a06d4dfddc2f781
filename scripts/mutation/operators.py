"""Seeded source mutations: every small change a test suite should notice, enumerated from the AST.

A mutant is a text edit of one source file: the span of one AST node (`lineno:col` to `end_lineno:end_col`)
replaced by new code, so the rest of the file keeps its layout and line numbers before the edit. Operators:

- compare   `<`→`<=`, `<`→`>=` (and so on for every comparison), `==`↔`!=`, `in`↔`not in`, `is`↔`is not`;
- arith     `+`↔`-`, `*`↔`/`, `//`→`/`, `%`→`//`, `**`→`*`, in expressions and augmented assignments;
- boolean   `and`↔`or`, `not x`→`x`, `-x`→`x`;
- constant  integers ±1, floats ×2 and ÷2 (0.0 → 1.0), True↔False;
- call      `min`↔`max`, `any`↔`all`;
- condition `if c:` → `if True:` / `if False:`, `while c:` → `while False:`, `a if c else b` with c → True / False,
            a comprehension's `if` filter dropped;
- statement an expression statement, augmented assignment, attribute/subscript assignment, re-assignment of a
            name, `raise`, `continue`, `break` replaced by `pass`; `return x` → `return None`.

Left alone: docstrings, annotations, f-strings, `assert` statements, `if TYPE_CHECKING:` blocks and `__all__`
(mutating them changes nothing a test can observe, or only the error text of a bug).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

COMPARE = {
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}
ARITH = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
CALLS = {"min": "max", "max": "min", "any": "all", "all": "any"}
SYMBOL = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
    ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
    ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
}  # fmt: skip


@dataclass(frozen=True, order=True)
class Mutant:
    """One edit of `path`: characters [start, end) of the file (line/column span) become `replacement`."""

    path: str
    lineno: int
    col: int
    end_lineno: int
    end_col: int
    description: str
    replacement: str

    @property
    def key(self) -> str:
        return f"{self.path}:{self.lineno}:{self.col}:{self.description}"

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)

        def position(lineno: int, col: int) -> int:
            return sum(len(line) for line in lines[: lineno - 1]) + _offset(lines[lineno - 1], col)

        start, end = position(self.lineno, self.col), position(self.end_lineno, self.end_col)
        return source[:start] + self.replacement + source[end:]


def _offset(line: str, col: int) -> int:
    """AST columns count UTF-8 bytes; string offsets count characters."""
    return len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))


def mutants(path: str, source: str) -> list[Mutant]:
    """Every mutant of one file (module docstring) that compiles and differs from the original, sorted."""
    tree = ast.parse(source)
    found = set()
    for node, new, description in _Finder(tree).edits():
        text = ast.unparse(new)
        if text == ast.unparse(node):
            continue
        if isinstance(node, ast.expr):
            text = f"({text})"
        mutant = Mutant(path, node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, description, text)
        try:
            compile(mutant.apply(source), path, "exec")
        except SyntaxError:
            continue
        found.add(mutant)
    return sorted(found)


class _Finder(ast.NodeVisitor):
    """Walks the tree once, skipping what the module docstring leaves alone, and yields (node, new node, label)."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.found: list[tuple[ast.AST, ast.AST, str]] = []
        self.bound: list[set[str]] = [set()]  # names assigned so far in each enclosing function

    def edits(self) -> Iterator[tuple[ast.AST, ast.AST, str]]:
        self.visit(self.tree)
        return iter(self.found)

    def add(self, node: ast.AST, new: ast.AST, description: str) -> None:
        self.found.append((node, ast.fix_missing_locations(new), description))

    # --------------------------------------------------------------- what is skipped

    def _body(self, body: list[ast.stmt]) -> None:
        for i, statement in enumerate(body):
            if i == 0 and _is_docstring(statement):
                continue
            self.visit(statement)

    def visit_Module(self, node: ast.Module) -> None:
        self._body(node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._body(node.body)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
            self.visit(default)
        names = {a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]}
        names |= {a.arg for a in (node.args.vararg, node.args.kwarg) if a is not None}
        self.bound.append(names)
        self._body(node.body)
        self.bound.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Assert(self, node: ast.Assert) -> None:
        pass

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)

    # --------------------------------------------------------------- statements

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        for value in (True, False):
            self.add(node.test, ast.Constant(value), f"if condition → {value}")
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self.add(node.test, ast.Constant(False), "while condition → False")
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if not isinstance(node.value, ast.Constant):
            self._drop(node, "drop expression statement")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._drop(node, "drop augmented assignment")
        if type(node.op) in ARITH:
            new = ast.AugAssign(node.target, ARITH[type(node.op)](), node.value)
            self.add(node, new, f"{SYMBOL[type(node.op)]}= → {SYMBOL[ARITH[type(node.op)]]}=")
        self.visit(node.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        targets = [t for target in node.targets for t in _flat(target)]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        in_function = len(self.bound) > 1
        if any(isinstance(t, ast.Attribute | ast.Subscript) for t in targets) or (
            in_function and names and names <= self.bound[-1]
        ):
            self._drop(node, "drop assignment")
        self.visit(node.value)
        for target in targets:
            if isinstance(target, ast.Subscript | ast.Attribute):
                self.visit(target.value)
                if isinstance(target, ast.Subscript):
                    self.visit(target.slice)
        self.bound[-1] |= names

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self.add(node, ast.Return(ast.Constant(None)), "return → return None")
            self.visit(node.value)

    def visit_Raise(self, node: ast.Raise) -> None:
        self._drop(node, "drop raise")

    def visit_Continue(self, node: ast.Continue) -> None:
        self._drop(node, "drop continue")

    def visit_Break(self, node: ast.Break) -> None:
        self._drop(node, "drop break")

    def _drop(self, node: ast.stmt, description: str) -> None:
        self.add(node, ast.Pass(), description)

    # --------------------------------------------------------------- expressions

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            for other in COMPARE.get(type(op), ()):
                ops = [*node.ops[:i], other(), *node.ops[i + 1 :]]
                self.add(node, ast.Compare(node.left, ops, node.comparators), f"{SYMBOL[type(op)]} → {SYMBOL[other]}")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) in ARITH:
            other = ARITH[type(node.op)]
            self.add(node, ast.BinOp(node.left, other(), node.right), f"{SYMBOL[type(node.op)]} → {SYMBOL[other]}")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other, label = (ast.Or(), "and → or") if isinstance(node.op, ast.And) else (ast.And(), "or → and")
        self.add(node, ast.BoolOp(other, node.values), label)
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not | ast.USub):
            self.add(node, node.operand, "drop not" if isinstance(node.op, ast.Not) else "drop unary minus")
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        for value in (True, False):
            self.add(node.test, ast.Constant(value), f"conditional expression condition → {value}")
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        for condition in node.ifs:
            self.add(condition, ast.Constant(True), "drop comprehension filter")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in CALLS:
            swapped = CALLS[node.func.id]
            self.add(node.func, ast.Name(swapped, ast.Load()), f"{node.func.id} → {swapped}")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self.add(node, ast.Constant(not value), f"{value} → {not value}")
        elif isinstance(value, int):
            self.add(node, ast.Constant(value + 1), f"{value} → {value + 1}")
            self.add(node, ast.Constant(value - 1), f"{value} → {value - 1}")
        elif isinstance(value, float):
            for new in (value * 2, value / 2) if value else (1.0,):
                self.add(node, ast.Constant(new), f"{value!r} → {new!r}")


def at_import(source: str, lineno: int) -> bool:
    """Whether the line runs when its module is imported (module or class level, a default, a decorator) rather
    than when a function is called. Coverage cannot tell: any test that imports the module in a subprocess runs it."""
    return not any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        and _body_start(node) <= lineno <= (node.end_lineno or node.lineno)
        for node in ast.walk(ast.parse(source))
    )


def _body_start(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> int:
    return node.body.lineno if isinstance(node, ast.Lambda) else node.body[0].lineno


def uses(source: str, lineno: int) -> set[int]:
    """Lines that run the code a mutant on `lineno` changes when that line only runs at import time: the body of a
    function whose default it mutates, the methods of a class whose attribute it mutates, or every line reading a
    module-level name it assigns. Empty when the line belongs to none of these."""
    tree = ast.parse(source)
    top = next((s for s in tree.body if s.lineno <= lineno <= (s.end_lineno or s.lineno)), None)
    if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return set(range(top.body[0].lineno, (top.end_lineno or top.lineno) + 1))
    if isinstance(top, ast.Assign | ast.AnnAssign):
        targets = top.targets if isinstance(top, ast.Assign) else [top.target]
        names = {t.id for target in targets for t in _flat(target) if isinstance(t, ast.Name)}
        return {
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load)
        }
    return set()


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _flat(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, ast.Tuple | ast.List):
        return [t for item in target.elts for t in _flat(item)]
    return [target]
