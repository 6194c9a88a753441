"""Deployment: every rule's conda env provides what its job imports; every rule has a job function;
pyproject.toml names exactly the packages the library imports.

Imports are read from the source (ast), not by importing: a rule's job imports the module-level
imports of the module its `job` param names, the imports inside its job function, and everything
the latent_atlas modules it reaches import (anywhere in them, conservatively), plus run_job.py's
own.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SRC = ROOT / "src"
RULES = ROOT / "workflow" / "rules"
HEADER = re.compile(r"^(?:rule|checkpoint) (\w+):|^use rule (\w+) as (\w+) with:", re.M)


def rule_blocks() -> dict[str, dict[str, str]]:
    """rule name -> {"conda": path, "script": path, "job": "module:function", "file": rule file}
    from workflow/rules/*.smk (a `use rule a as b with:` rule inherits what it does not override)."""
    rules: dict[str, dict[str, str]] = {}
    derived = []  # `use rule` rules, resolved once every file is read (a base may be in a later file)
    for path in sorted(RULES.glob("*.smk")):
        text = path.read_text()
        heads = list(HEADER.finditer(text))
        for head, nxt in zip(heads, heads[1:] + [None]):
            body = text[head.end():nxt.start() if nxt else len(text)]
            found = {key: m.group(1) for key in ("conda", "script")
                     if (m := re.search(rf"^    {key}:\n\s+\"([^\"]+)\"", body, re.M))}
            if m := re.search(r'^        job="([^"]+)",$', body, re.M):
                found["job"] = m.group(1)
            if head.group(1):
                rules[head.group(1)] = {**found, "file": path.name}
            else:
                derived.append((head.group(2), head.group(3), {**found, "file": path.name}))
    for base, name, found in derived:
        rules[name] = {**rules[base], **found}
    return rules


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(nodes) -> set[str]:
    """Dotted names imported anywhere under `nodes` (`from a.b import c` gives a.b and a.b.c)."""
    names: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names


@lru_cache(maxsize=None)
def third_party_of_module(name: str) -> frozenset[str]:
    """Top-level third-party modules that latent_atlas module `name` imports, transitively."""
    seen, todo, found = set(), [name], set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = module_file(mod)
        if path is None:
            continue
        for imported in _imports(ast.parse(path.read_text()).body):
            top = imported.split(".")[0]
            if top == "latent_atlas":
                todo.append(imported)
                if "." in imported:  # the package __init__ of a submodule runs too
                    todo.append(imported.rsplit(".", 1)[0])
            elif top not in sys.stdlib_module_names:
                found.add(top)
    return frozenset(found)


def job_imports(rule: str) -> set[str]:
    """Third-party top-level modules the job of `rule` may import."""
    module, _, name = RULE_BLOCKS[rule]["job"].partition(":")
    tree = ast.parse(module_file(module).read_text())
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.If))]
    names = _imports(top_level) | _imports([function])
    script = ROOT / "workflow" / "scripts" / "run_job.py"
    names |= _imports(ast.parse(script.read_text()).body)
    out = set()
    for imported in names:
        top = imported.split(".")[0]
        if top == "latent_atlas":
            out |= third_party_of_module(imported)
            if "." in imported:
                out |= third_party_of_module(imported.rsplit(".", 1)[0])
        elif top not in sys.stdlib_module_names:
            out.add(top)
    return out


def normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def distributions_of(modules: set[str]) -> set[str]:
    """Installed distributions providing these top-level modules."""
    mapping = packages_distributions()
    missing = sorted(m for m in modules if m not in mapping)
    assert not missing, f"modules imported but not installed in this venv: {missing}"
    return {normalise(mapping[m][0]) for m in modules}


def env_packages(env_file: Path) -> set[str]:
    """Distributions an env file installs (its pip: list and conda dependencies)."""
    env = yaml.safe_load(env_file.read_text())
    out = set()
    for dep in env["dependencies"]:
        specs = dep["pip"] if isinstance(dep, dict) else [dep]
        out.update(normalise(re.split(r"[=<>!~ ]", spec)[0]) for spec in specs)
    return out


RULE_BLOCKS = rule_blocks()


def test_rule_files_were_parsed():
    assert len(RULE_BLOCKS) >= 30
    assert {"train", "importance_block", "figure_manifest", "extract_classifier"} <= set(RULE_BLOCKS)


@pytest.mark.parametrize("rule", sorted(RULE_BLOCKS))
def test_rule_runs_a_job_function_under_an_env_that_provides_its_imports(rule):
    block = RULE_BLOCKS[rule]
    assert block.get("script") == "../scripts/run_job.py", f"rule {rule} ({block['file']}): script"
    assert "job" in block, f"rule {rule} ({block['file']}) names no job function (params: job=...)"
    assert "conda" in block, f"rule {rule} ({block['file']}) declares no conda env"
    env_file = (RULES / block["conda"]).resolve()
    assert env_file.is_file(), f"rule {rule}: conda env {block['conda']} not found"
    needed = distributions_of(job_imports(rule))
    missing = sorted(needed - env_packages(env_file))
    assert not missing, f"rule {rule}: {env_file.name} lacks {missing}, which its job imports"


def test_the_check_finds_a_missing_package(tmp_path):
    """The env check can fail: an env without numba does not serve the importance shards."""
    env = yaml.safe_load((ROOT / "envs" / "torch.yaml").read_text())
    env["dependencies"][-1]["pip"] = [p for p in env["dependencies"][-1]["pip"] if not p.startswith("numba")]
    path = tmp_path / "torch.yaml"
    path.write_text(yaml.safe_dump(env))
    assert "numba" in distributions_of(job_imports("importance_block"))
    assert "numba" not in env_packages(path)


def test_pyproject_names_exactly_what_the_library_imports():
    import tomllib

    declared = {normalise(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    modules = set()
    for path in (SRC / "latent_atlas").rglob("*.py"):
        modules |= {n.split(".")[0] for n in _imports(ast.parse(path.read_text()).body)}
    imported = distributions_of({m for m in modules if m not in sys.stdlib_module_names and m != "latent_atlas"})
    assert declared == imported, f"pyproject only: {sorted(declared - imported)}; imported only: {sorted(imported - declared)}"
