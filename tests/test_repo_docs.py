"""The repository's own documents point at things that exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    ROOT / "CHANGELOG.md",
    *ROOT.glob("docs/*.md"),
]
SOURCES = [
    p
    for area in ("camfleet", "proto", "controller", "edge", "esp32_node", "broker_config", "docs")
    for p in (ROOT / area).rglob("*")
    if p.suffix in (".py", ".md", ".proto", ".toml") and "__pycache__" not in p.parts
]


def test_relative_links_in_the_docs_resolve() -> None:
    broken, checked = [], 0
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            checked += 1
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert checked >= 10 and not broken, broken


def test_no_file_refers_to_a_design_document_the_repo_does_not_have() -> None:
    assert not (ROOT / "DESIGN.md").exists()
    mentions = [str(p.relative_to(ROOT)) for p in SOURCES if "DESIGN.md" in p.read_text()]
    assert not mentions


def test_license_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_pre_commit_runs_scripts_check() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [h for repo in config["repos"] for h in repo["hooks"]]
    assert [(h["entry"], h["pass_filenames"]) for h in hooks] == [("scripts/check", False)]
