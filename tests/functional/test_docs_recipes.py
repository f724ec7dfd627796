"""Every recipe in the docs is a file under deploy/ that the docs show unchanged (issue 12).

A fenced block that follows a line ending in ``file `deploy/...``` must equal that file;
every nginx configuration under deploy/nginx is shown so; and node-side.md shows no nginx
block that is not such a file.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_INCLUDED = re.compile(r"file `(deploy/[^`]+)`\s*\n\s*\n```[a-z]*\n(.*?)```", re.DOTALL)


def included(doc: Path) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _INCLUDED.finditer(doc.read_text())}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_included_blocks_equal_their_files(doc):
    for name, block in included(doc).items():
        assert block == (ROOT / name).read_text(), f"{doc.name}: {name} differs from the file"


# The node backend behind API Gateway's node half is shown with the rest of that half, in
# docs/aws.md, and run by the rehearsal (tests/rehearsal/backend.py).
AWS_RECIPES = {"deploy/nginx/nodecert-apigateway-backend.conf"}


def test_every_nginx_recipe_is_shown_and_no_other():
    shown = included(ROOT / "docs" / "node-side.md")
    files = {f"deploy/nginx/{p.name}" for p in (ROOT / "deploy" / "nginx").glob("*.conf")}
    assert files and files - AWS_RECIPES <= set(shown)
    assert set(included(ROOT / "docs" / "aws.md")) >= AWS_RECIPES
    text = (ROOT / "docs" / "node-side.md").read_text()
    assert text.count("```nginx") == len([n for n in shown if n.startswith("deploy/nginx/")])


def test_every_recipe_under_deploy_nginx_and_asgi_is_shown_and_run_by_a_test():
    # Every file, whatever its suffix: a recipe nobody shows or runs rots unseen.
    shown = {**included(ROOT / "docs" / "node-side.md"), **included(ROOT / "docs" / "aws.md")}
    tests = "".join(
        (ROOT / "tests" / name).read_text()
        for name in (
            "integration/test_nginx.py",
            "integration/test_node_app_recipe.py",
            "rehearsal/backend.py",
        )
    )
    for folder in ("nginx", "asgi"):
        for path in sorted((ROOT / "deploy" / folder).iterdir()):
            if path.name == "__pycache__":
                continue
            name = f"deploy/{folder}/{path.name}"
            assert name in shown, f"{name} is not shown in docs/node-side.md or docs/aws.md"
            assert path.name in tests or path.stem in tests, f"no test runs {name}"
