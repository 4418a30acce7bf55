# -*- test-case-name: tests.test_architecture -*-
"""
squeak's layering, as tests.

Three rules, each checked against the source tree as it is:

 - a pure module imports neither Twisted, diskcache nor pyOpenSSL, directly
   or through anything it imports (checked at run time, one fresh
   interpreter per module);
 - squeak's modules import each other without a cycle (checked statically
   from the source with L{ast}, imports inside functions included);
 - a module imports only modules of its own layer or of a lower one.

The layers are the data below.  Every module of the package must be in
exactly one of them, so a new module is placed on purpose; a new module
under C{squeak/http/} or C{squeak/net/} or C{squeak/proxy/} falls into its
package's layer by itself.  The pure modules are those of the pure layers.

The same data decides what C{make test-fast} runs: the tests of the pure
modules, which must themselves import nothing but pure squeak modules.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "squeak"
TESTS = ROOT / "tests"
MAKEFILE = ROOT / "Makefile"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"


class Layer(NamedTuple):
    name: str
    pure: bool
    # Module names; "pkg.*" stands for pkg and everything under it.  An
    # exact name wins over a pattern.
    modules: tuple[str, ...]


# Lowest first.  A module may import its own layer and the layers below.
LAYERS: tuple[Layer, ...] = (
    Layer("foundation", True, ("squeak", "squeak.values", "squeak.memo")),
    Layer(
        "pure core",
        True,
        (
            # config builds its rules from access.acl/rules, and
            # cache.policy reads config: all pure, so one layer.
            "squeak.config",
            "squeak.config_values",
            "squeak.http.*",
            "squeak.access",
            "squeak.access.facts",
            "squeak.access.acl",
            "squeak.access.purge",
            "squeak.access.rules",
            "squeak.access.auth",
            "squeak.cache",
            "squeak.cache.directives",
            "squeak.cache.keys",
            "squeak.cache.policy",
            "squeak.cache.freshness",
            "squeak.cache.storing",
            "squeak.cache.validation",
            "squeak.cache.ranges",
            "squeak.upstream.*",
            "squeak.accel",
            "squeak.accel.*",
            "squeak.cache.inventory",
            "squeak.errors",
            # Error page templates: negotiation and rendering (reads the
            # template files, as access.auth reads htpasswd files).
            "squeak.errorpages",
            # The access log's record and formatters; accesslog is their
            # I/O shell.
            "squeak.accessrecord",
            "squeak.logformat",
            "squeak.logline",
            # Many boxes: the PAC file's text and the PROXY protocol's
            # framing and trust (their I/O: proxy/pac, net/proxyprotocol).
            "squeak.pac",
            "squeak.proxyheader",
            # What operators see: counters, manager pages, their settings.
            "squeak.stats",
            "squeak.stats.counters",
            "squeak.stats.pages",
            "squeak.stats.settings",
        ),
    ),
    Layer(
        "state and transport",
        False,
        (
            "squeak.accesslog",
            "squeak.cache.memory",
            "squeak.cache.disk",
            "squeak.cache.diskindex",
            "squeak.cache.generations",
            "squeak.cache.recency",
            "squeak.cache.sharedfetch",
            "squeak.cache.store",
            "squeak.cache.faults",
            # Process plumbing: sd_notify, the account switch, the drain.
            "squeak.notify",
            "squeak.startup",
            "squeak.drain",
            "squeak.cache.bodyfile",
            "squeak.cache.layout",
            "squeak.stats.table",
            "squeak.net.*",
        ),
    ),
    Layer("policy over I/O", False, ("squeak.access.gatekeeper", "squeak.cache.facade")),
    Layer("proxy", False, ("squeak.proxy.*",)),
    Layer("composition root", False, ("squeak.service", "squeak.master", "squeak.metrics")),
    Layer(
        "entry points",
        False,
        ("squeak.tap", "squeak.__main__", "squeak.cli", "squeak.control", "squeak.worker"),
    ),
)

# Top-level packages a pure module must never bring in.
FORBIDDEN = ("twisted", "diskcache", "OpenSSL")

# Test modules that are in test-fast without being the tests of one pure module.
EXTRA_FAST_TESTS = frozenset({"tests.test_architecture"})


# -- the static import graph --------------------------------------------------


def discover(package: Path = PACKAGE) -> dict[str, Path]:
    """
    Every module of the package, by dotted name, found by walking its
    directory (so a new file is covered without being listed).
    """
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


class Imports(NamedTuple):
    internal: frozenset[str]  # modules of the package
    external: frozenset[str]  # top-level names of everything else


def imports_of(name: str, source: str, known: Iterable[str], is_package: bool = False) -> Imports:
    """
    What module C{name} imports, read from its C{source}: every C{import}
    and C{from ... import} statement at any depth (module level, inside
    functions, under C{if TYPE_CHECKING}), relative ones resolved.
    """
    known = set(known)
    package = name if is_package else name.rpartition(".")[0]
    internal: set[str] = set()
    external: set[str] = set()

    def add(module: str) -> None:
        top = module.partition(".")[0]
        if top != "squeak":
            external.add(top)
            return
        while module not in known and "." in module:
            module = module.rpartition(".")[0]
        internal.add(module)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                add(submodule if submodule in known else module)
    internal.discard(name)
    return Imports(frozenset(internal), frozenset(external))


def import_graph() -> dict[str, Imports]:
    """
    The import graph of squeak's modules, read from the source files.
    """
    modules = discover()
    return {
        name: imports_of(
            name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py"
        )
        for name, path in modules.items()
    }


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """
    One cycle, as a closed path C{[a, b, ..., a]}, for every strongly
    connected set of modules that has one (Tarjan's algorithm, iterative).
    """
    edges = {node: sorted(set(targets) & set(graph)) for node, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                target = edges[node][i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    components.append(sorted(component))
    return [_cycle_within(edges, set(component)) for component in components]


def _cycle_within(edges: Mapping[str, list[str]], component: set[str]) -> list[str]:
    """
    A closed path through the first member of a strongly connected set.
    """
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in edges[node]:
            if target == start:
                return [*paths[node], start]
            if target in component and target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no cycle in {sorted(component)}")


# -- layers -------------------------------------------------------------------


def layer_of(module: str, layers: Iterable[Layer] = LAYERS) -> int | None:
    """
    The index of the layer holding C{module}: an exact name first, then the
    longest C{pkg.*} pattern that covers it; L{None} if none does.
    """
    best: tuple[int, int] | None = None  # (specificity, layer)
    for number, layer in enumerate(layers):
        for entry in layer.modules:
            if entry == module:
                return number
            package = entry.removesuffix(".*")
            covers = entry.endswith(".*") and (
                module == package or module.startswith(package + ".")
            )
            if covers and (best is None or len(package) > best[0]):
                best = (len(package), number)
    return None if best is None else best[1]


def pure_modules(modules: Iterable[str]) -> list[str]:
    """
    The modules in a pure layer.
    """
    return sorted(m for m in modules if (n := layer_of(m)) is not None and LAYERS[n].pure)


def layer_violations(graph: Mapping[str, Imports], sources: Iterable[str]) -> list[str]:
    """
    Every import by one of C{sources} of a module in a higher layer.
    """
    found = []
    for module in sorted(sources):
        mine = layer_of(module)
        if mine is None:  # test_every_module_has_one_layer reports it
            continue
        for target in sorted(graph[module].internal):
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                found.append(
                    f"{module} ({mine}: {LAYERS[mine].name}) imports "
                    f"{target} ({theirs}: {LAYERS[theirs].name})"
                )
    return found


# -- run-time checks in fresh interpreters --------------------------------------

_PROBE = """\
import importlib, inspect, json, sys
found = {}
for name in sys.argv[1:]:
    before = set(sys.modules)
    module = importlib.import_module(name)
    cases, asynchronous = [], []
    if "twisted.trial.unittest" in sys.modules:
        from twisted.trial import unittest
        for key, value in sorted(vars(module).items()):
            if (inspect.isclass(value) and value.__module__ == module.__name__
                    and issubclass(value, unittest.SynchronousTestCase)):
                cases.append(key)
                if issubclass(value, unittest.TestCase):
                    asynchronous.append(key)
    found[name] = {"modules": sorted(set(sys.modules) - before), "cases": cases,
                   "asynchronous": asynchronous}
print(json.dumps(found))
"""


class Probe(NamedTuple):
    modules: frozenset[str]  # what the import added to sys.modules
    cases: tuple[str, ...]  # test case classes defined by the module
    asynchronous: tuple[str, ...]  # those of them that are trial's TestCase


def probe(groups: Iterable[Iterable[str]]) -> dict[str, Probe]:
    """
    Import each group of modules, in order, in a fresh interpreter of its
    own (all groups at once), and report what each import loaded: a module
    alone in its group is seen from a clean start.
    """
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    children = [
        (
            names,
            subprocess.Popen(
                [sys.executable, "-c", _PROBE, *names],
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
        )
        for names in (list(group) for group in groups)
    ]
    found = {}
    for names, child in children:
        out, err = child.communicate(timeout=60)
        if child.returncode != 0:
            raise AssertionError(f"importing {names} failed:\n{err.decode(errors='replace')}")
        for name, data in json.loads(out).items():
            found[name] = Probe(
                frozenset(data["modules"]), tuple(data["cases"]), tuple(data["asynchronous"])
            )
    return found


def forbidden_loaded(loaded: Iterable[str]) -> list[str]:
    """
    The forbidden top-level packages among loaded module names.
    """
    return sorted({m.partition(".")[0] for m in loaded} & set(FORBIDDEN))


def import_chain(graph: Mapping[str, Imports], module: str, package: str) -> str:
    """
    A path of static imports from C{module} to one that imports C{package}
    directly, to say why a module is not pure.
    """
    paths = {module: [module]}
    queue = [module]
    while queue:
        node = queue.pop(0)
        if package in graph[node].external:
            return " -> ".join([*paths[node], package])
        for target in sorted(graph[node].internal):
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    return f"{module}: {package} (brought in by a library, not by a squeak import)"


def impurities(modules: Iterable[str]) -> list[str]:
    """
    For each of C{modules} that loads a forbidden package, why.
    """
    graph = import_graph()
    found = []
    for name, result in sorted(probe([name] for name in modules).items()):
        for package in forbidden_loaded(result.modules):
            found.append(import_chain(graph, name, package))
    return found


# -- the test-fast list -----------------------------------------------------------


def makefile_variable(text: str, name: str) -> list[str]:
    """
    The words of a simple C{NAME := ...} Makefile variable, continuation
    lines included.
    """
    match = re.search(rf"^{name}\s*:?=((?:.*\\\n)*.*)$", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"no {name} variable in the Makefile")
    return match.group(1).replace("\\\n", " ").split()


def fast_tests_expected() -> set[str]:
    """
    The test modules of the pure modules (C{squeak.a.b} is tested by
    C{tests/test_a_b.py}), plus L{EXTRA_FAST_TESTS}.
    """
    expected = set(EXTRA_FAST_TESTS)
    for module in pure_modules(discover()):
        if module == "squeak":
            continue
        test = "test_" + module.removeprefix("squeak.").replace(".", "_")
        if (TESTS / f"{test}.py").exists():
            expected.add(f"tests.{test}")
    return expected


class ImportGraphTests(SynchronousTestCase):
    """
    The static import graph, its cycle finder and the layer data.
    """

    def test_graph_reads_all_imports(self) -> None:
        """
        Imports at module level, inside functions, relative ones and
        C{from package import module} all become edges; outside packages
        are kept by their top-level name.
        """
        source = (
            "import os.path\n"
            "from squeak.http import fields\n"
            "from . import keys\n"
            "from .directives import split_list\n"
            "def f():\n"
            "    from squeak.config import CacheConfig\n"
            "    import twisted.internet.defer\n"
        )
        known = {
            "squeak",
            "squeak.config",
            "squeak.http",
            "squeak.http.fields",
            "squeak.cache",
            "squeak.cache.directives",
            "squeak.cache.keys",
            "squeak.cache.store",
            "squeak.cache.faults",
            "squeak.cache.bodyfile",
            "squeak.cache.layout",
        }
        self.assertEqual(
            imports_of("squeak.cache.store", source, known),
            Imports(
                frozenset(
                    {
                        "squeak.http.fields",
                        "squeak.cache.keys",
                        "squeak.cache.directives",
                        "squeak.config",
                    }
                ),
                frozenset({"os", "twisted"}),
            ),
        )

    def test_find_cycles(self) -> None:
        """
        A cycle is reported as a closed path; a graph without one gives
        nothing; a self-import is a cycle.
        """
        self.assertEqual(find_cycles({"a": ["b"], "b": ["c"], "c": []}), [])
        self.assertEqual(
            find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}),
            [["a", "b", "c", "a"]],
        )
        self.assertEqual(find_cycles({"a": ["a"]}), [["a", "a"]])

    def test_layer_of(self) -> None:
        """
        A package pattern covers the package and what is under it, so a new
        C{squeak.http} module is in the pure core; an exact name wins.
        """
        self.assertEqual(layer_of("squeak.http.newthing"), 1)
        self.assertEqual(layer_of("squeak.http"), 1)
        self.assertEqual(layer_of("squeak.cache.store"), 2)
        self.assertIsNone(layer_of("squeak.cache.newthing"))
        self.assertTrue(LAYERS[1].pure)
        self.assertFalse(LAYERS[2].pure)

    def test_every_module_has_one_layer(self) -> None:
        """
        Every module of the package is in a layer, and every name in the
        layer data is a module that exists (or a package that does), so the
        data cannot rot.
        """
        modules = discover()
        self.assertEqual(sorted(m for m in modules if layer_of(m) is None), [])
        entries = [entry for layer in LAYERS for entry in layer.modules]
        self.assertEqual(sorted(e for e in entries if e.removesuffix(".*") not in modules), [])
        self.assertEqual(len(entries), len(set(entries)))

    def test_pure_layers_at_the_bottom(self) -> None:
        """
        The pure layers are the lowest ones: nothing pure sits above I/O.
        """
        flags = [layer.pure for layer in LAYERS]
        self.assertEqual(flags, sorted(flags, reverse=True))

    def test_no_cycles(self) -> None:
        """
        No import cycle among squeak's modules, counting imports inside
        functions and under C{TYPE_CHECKING}.
        """
        graph = import_graph()
        cycles = find_cycles({name: imports.internal for name, imports in graph.items()})
        self.assertEqual([" -> ".join(cycle) for cycle in cycles], [])

    def test_cache_has_one_door(self) -> None:
        """
        Outside C{squeak.cache}, only the facade is imported: the policy,
        the store and the tiers are reached through it (the issue-12 rule
        that the cache has one door).
        """
        graph = import_graph()
        doors = {"squeak.cache", "squeak.cache.facade"}
        side_doors = sorted(
            f"{module} imports {target}"
            for module, imports in graph.items()
            if not module.startswith("squeak.cache")
            for target in imports.internal
            if target.startswith("squeak.cache.") and target not in doors
        )
        self.assertEqual(side_doors, [])

    def test_layers_point_down(self) -> None:
        """
        No module imports a module of a higher layer.
        """
        graph = import_graph()
        self.assertEqual(layer_violations(graph, set(graph)), [])


class PurityTests(SynchronousTestCase):
    """
    Pure modules load no Twisted, diskcache or pyOpenSSL, checked in fresh
    interpreters so that nothing already imported hides an import.
    """

    def test_pure_modules(self) -> None:
        """
        Each pure module, imported alone, loads none of L{FORBIDDEN}; a
        failure names the chain of imports that brings one in.
        """
        modules = pure_modules(discover())
        self.assertIn("squeak.http.target", modules)
        self.assertEqual(impurities(modules), [])


class FastTestsTests(SynchronousTestCase):
    """
    C{make test-fast} runs the tests of the pure modules and nothing else.
    """

    def test_makefile_list(self) -> None:
        """
        The Makefile's C{TEST_FAST} is the test modules of the pure modules
        (C{squeak.a.b} -> C{tests.test_a_b}) plus this one.
        """
        listed = makefile_variable(MAKEFILE.read_text(encoding="utf-8"), "TEST_FAST")
        self.assertEqual(len(listed), len(set(listed)))
        self.assertEqual(sorted(listed), sorted(fast_tests_expected()))

    def test_fast_tests_are_synchronous_and_pure(self) -> None:
        """
        The modules of C{TEST_FAST} load no squeak module outside the pure
        ones (and so no I/O code of squeak), load neither diskcache nor
        pyOpenSSL, and define only C{SynchronousTestCase}s.  They are
        imported one after the other in one fresh interpreter (a module
        loaded by several is charged to the first).
        """
        listed = makefile_variable(MAKEFILE.read_text(encoding="utf-8"), "TEST_FAST")
        pure = set(pure_modules(discover()))
        problems = []
        for name, result in sorted(probe([listed]).items()):
            squeak = {m for m in result.modules if m.partition(".")[0] == "squeak"}
            for module in sorted(squeak - pure):
                problems.append(f"{name} loads {module}")
            for package in forbidden_loaded(result.modules):
                if package != "twisted":  # trial itself
                    problems.append(f"{name} loads {package}")
            if not result.cases:
                problems.append(f"{name} defines no test case")
            for case in result.asynchronous:
                problems.append(f"{name}.{case} is a trial TestCase, not a SynchronousTestCase")
        self.assertEqual(problems, [])


def documented_modules(text: str) -> set[str]:
    """
    The module paths named in the first column of the module table of
    docs/architecture.md (rows like C{| `squeak/http/target.py` | yes | ...}).
    """
    return set(re.findall(r"^\| `(squeak/[\w/]+\.py)` \|", text, re.MULTILINE))


class ModuleTableTests(SynchronousTestCase):
    """
    docs/architecture.md's module table matches the tree.
    """

    def test_documented_modules(self) -> None:
        """
        Every module of C{squeak/} has a row in the table, and every row
        names a module that exists.
        """
        documented = documented_modules(ARCHITECTURE_DOC.read_text(encoding="utf-8"))
        # Subpackages' __init__ files hold only a docstring; the package's
        # own holds the version and has a row.
        present = {
            str(path.relative_to(ROOT))
            for path in PACKAGE.rglob("*.py")
            if not (path.name == "__init__.py" and path.parent != PACKAGE)
        }
        self.assertEqual(sorted(present - documented), [])
        self.assertEqual(sorted(documented - present), [])

    def test_documented_modules_reads_rows(self) -> None:
        """
        The table reader finds module rows and nothing else.
        """
        text = "| `squeak/a.py` | yes | x |\n| `squeak/b/c.py` | no | y |\nsee `squeak/d.py`\n"
        self.assertEqual(documented_modules(text), {"squeak/a.py", "squeak/b/c.py"})
