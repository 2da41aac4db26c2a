"""README's module map matches the tree: every module of labsupport and instructor is in it, and every module it
names exists."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(package: str) -> set[str]:
    out = set()
    for p in (ROOT / package).rglob("*.py"):
        rel = p.relative_to(ROOT / package).with_suffix("")
        if rel.name in ("__init__", "__main__") or (rel.parts[:2] == ("grading", "hidden")):
            continue
        out.add(".".join(rel.parts))
    return out


def test_every_module_is_in_the_readme_and_every_name_exists():
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`([a-z_]+(?:\.[a-z_0-9]+)?)`", text))
    for package in ("labsupport", "instructor"):
        for m in modules(package):
            if re.fullmatch(r"checks\.lab\d\d", m):
                continue                     # listed as checks.lab01 ... checks.lab09
            assert m in named, f"README's module map does not mention {package}.{m}"
    labs = sorted(p.stem for p in (ROOT / "labsupport" / "checks").glob("lab[0-9][0-9].py"))
    assert f"`checks.{labs[0]}` ... `checks.{labs[-1]}`" in text
    assert len(labs) == len(list((ROOT / "notebooks").glob("lab*.ipynb")))
    for name in named:
        head = name.split(".")[0]
        if head in ("models", "data", "checks"):
            assert (ROOT / "labsupport" / Path(*name.split("."))).with_suffix(".py").exists(), name
        elif head in ("grading", "bench"):
            path = ROOT / "instructor" / Path(*name.split("."))
            assert path.with_suffix(".py").exists() or (path / "__init__.py").exists(), name
