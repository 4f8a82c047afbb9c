"""The package structure holds: no import cycles (even through imports inside
functions), layers import only downwards, modules stay small, and the public
API is exactly what is documented."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lakevec

PACKAGE = Path(lakevec.__file__).resolve().parent
MAX_LINES = 400

# Layer of each top-level part of the package; a module may import its own
# layer and the layers listed for it (docs/ARCHITECTURE.md).
CORE = {
    "lakevec", "settings", "errors", "clock", "files", "locks", "paths", "topk", "jsonsafe",
    "lines", "corpus",
}
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "embed": {"core"},
    "index": {"core", "embed"},
    "retrieval": {"core", "embed", "index"},
    "replay": {"core", "embed", "index", "retrieval"},
    "eval": {"core", "embed", "index", "retrieval"},
    "ab": {"core", "embed", "index", "retrieval", "replay"},
    "report": {"core", "embed", "index", "retrieval", "replay", "ab"},
    "loop": {"core", "embed", "index", "retrieval", "replay", "ab"},
    "service": {"core", "embed", "index", "retrieval", "replay"},
    "cli": {"core", "embed", "index", "retrieval", "replay", "eval", "ab", "report", "loop",
            "service"},
    # lakevec/__main__.py: the console script; answers --version, else hands over to cli.
    "__main__": {"core", "cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "lakevec"
    return "core" if top in CORE else top


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(module: str) -> set[str]:
    """lakevec modules ``module`` imports anywhere (functions too), except TYPE_CHECKING."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking_block(node):
            skip.update(id(n) for n in ast.walk(node))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("lakevec") and name != module:
                found.add(name)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_scanner_sees_imports_inside_functions() -> None:
    # A negative control: the CLI imports the library only inside commands.
    assert any(m.startswith("lakevec.index") for m in set().union(*(
        GRAPH[m] for m in MODULES if m.startswith("lakevec.cli")
    )))


def test_layers_import_only_downwards() -> None:
    bad = [
        f"{m} ({layer(m)}) imports {dep} ({layer(dep)})"
        for m, deps in GRAPH.items()
        for dep in deps
        if layer(dep) != layer(m) and layer(dep) not in ALLOWED[layer(m)]
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concept"


def external_imports(path: Path) -> set[str]:
    """Top-level names of every module a file imports (absolute imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_graph_imports_hnswlib() -> None:
    users = [m for m, p in MODULES.items() if "hnswlib" in external_imports(p)]
    assert users == ["lakevec.index.graph"]


PUBLIC_API = {
    "__version__",
    # corpus
    "PlaybookRecord", "Corpus", "read_corpus", "embed_text",
    # embedding
    "Embedder", "HashEmbedder", "SentenceTransformerEmbedder", "load_embedder",
    "load_query_embedder",
    # index
    "HnswParams", "IndexManifest", "StoredRecord", "IndexSnapshot", "open_index",
    "BuildReport", "build_index", "index_corpus", "index_status",
    # retrieval
    "Hit", "Retriever", "SearchFilters", "JaccardRetriever", "DenseRetriever",
    "BM25Retriever", "HybridRetriever", "open_retriever", "retriever_for", "RETRIEVERS",
    "DEFAULT_RETRIEVER",
    # replay
    "ContextBundle", "RetrievedArtifact", "build_context_bundle", "build_prompt",
    "ValidationResult", "validate_response", "ChatGateway", "ChatResult", "HttpGateway",
    "ReplayResult", "ReplayRunRow", "append_evidence", "ReplayRequest", "replay", "run_replay",
    # service
    "ServerSettings", "create_app", "ServiceClient",
    # clock
    "Clock", "SystemClock",
    # errors
    "LakevecError", "UsageProblem", "CorpusError", "IndexMissingError", "IndexCorruptError",
    "ModelMismatchError", "ModelLoadError", "IndexLockedError", "GatewayError",
    "EvidenceError", "ExportError", "ServiceError",
}


def test_public_api_is_exactly_the_documented_names() -> None:
    assert set(lakevec.__all__) == PUBLIC_API


def test_every_public_name_resolves_to_its_module() -> None:
    for name in sorted(PUBLIC_API - {"__version__"}):
        value = getattr(lakevec, name)
        assert value is not None, name


def test_import_is_lazy() -> None:
    import subprocess
    import sys

    code = "import sys, lakevec; print('torch' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
