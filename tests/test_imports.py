"""The project's import graph, read from the source (imports inside functions included): no
circle, and the maths modules (diffusion, samplers, networks, divergences) import nothing
above them, so each can be read and tested alone."""
import ast

from .conftest import REPO

PACKAGES = ("ddgan", "divergences")


def module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}


def imports_of(name):
    """The project's modules that module `name` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]  # submodules
        else:
            continue
        found |= {target for target in targets if target in MODULES and target != name}
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def find_circle(graph):
    """One import circle as a list of modules (first = last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                circle = visit(nxt)
                if circle:
                    return circle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            circle = visit(node)
            if circle:
                return circle
    return None


def test_the_reader_finds_relative_and_function_level_imports():
    assert "ddgan.checks" in GRAPH["ddgan.diffusion"]      # from .checks import check_count
    assert "ddgan.checkpoint" in GRAPH["ddgan.evaluate"]   # from . import checkpoint
    assert "ddgan.featnet" in GRAPH["ddgan.cli"]            # inside a function
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    circle = find_circle(GRAPH)
    assert circle is None, " -> ".join(circle)


def test_the_maths_modules_import_nothing_above_them():
    maths = {name for name in MODULES if name.startswith(("ddgan.networks", "divergences"))} | {
        "ddgan.diffusion", "ddgan.samplers", "ddgan.checks"}
    for name in sorted(maths):
        above = GRAPH[name] - maths
        assert not above, f"{name} imports {', '.join(sorted(above))}"


def test_config_imports_no_method_and_speed_takes_its_settings_as_arguments():
    assert not {name for name in GRAPH["ddgan.config"] if name.startswith("ddgan.methods.")}
    assert GRAPH["ddgan.speed"] == set()
