"""docs/hooks.md documents exactly the hooks of the contract, and all of RunView.

Each hook of ``drytorch.hookspecs`` needs a section headed ``### `name` `` with
its signature (a line containing ``def name(``) and a Python example that
implements it with ``hookimpl``; a section for a hook that does not exist
fails too, since it would document a contract that is not there.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from drytorch.core.run_view import RunView
from drytorch.hookspecs import SPEC_MODULES

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOOKS_DOC = ROOT / 'docs' / 'hooks.md'

HOOK_HEADING = re.compile(r'^### `([^`]+)`\s*$', re.MULTILINE)
# a section ends at the next heading of level 2 or 3
SECTION_END = re.compile(r'^#{2,3} ', re.MULTILINE)
PYTHON_BLOCK = re.compile(r'^```python\n(.*?)^```', re.MULTILINE | re.DOTALL)


def contract_hooks() -> list[str]:
    """Return every hook name that the spec modules declare."""
    return sorted(
        name
        for module in SPEC_MODULES
        for name, value in vars(module).items()
        if callable(value) and hasattr(value, 'drytorch_spec')
    )


def doc_text() -> str:
    assert HOOKS_DOC.is_file(), f'{HOOKS_DOC} is missing: document every hook there.'
    return HOOKS_DOC.read_text(encoding='utf-8')


def hook_sections(text: str) -> dict[str, list[str]]:
    """Return the body of each ``### `name` `` section, by name (all of them)."""
    sections: dict[str, list[str]] = {}
    for match in HOOK_HEADING.finditer(text):
        end = SECTION_END.search(text, match.end())
        body = text[match.end() : end.start() if end else len(text)]
        sections.setdefault(match.group(1), []).append(body)
    return sections


def run_view_section(text: str) -> str:
    """Return the ``## RunView`` section, the reference of the view."""
    match = re.search(r'^## RunView\s*$', text, re.MULTILINE)
    assert match, 'docs/hooks.md has no "## RunView" section.'
    end = re.compile(r'^## ', re.MULTILINE).search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


def public_run_view_names() -> list[str]:
    return sorted(name for name in dir(RunView) if not name.startswith('_'))


def test_hooks_are_found() -> None:
    hooks = contract_hooks()
    assert {'on_run_start', 'save_checkpoint', 'run_outputs'} <= set(hooks)
    assert len(hooks) > 20


@pytest.mark.parametrize('hook', contract_hooks())
def test_each_hook_has_a_complete_section(hook: str) -> None:
    sections = hook_sections(doc_text()).get(hook)
    assert sections, f'docs/hooks.md has no "### `{hook}`" section.'
    assert len(sections) == 1, f'docs/hooks.md has {len(sections)} sections of {hook}.'
    body = sections[0]
    blocks = PYTHON_BLOCK.findall(body)
    assert any(f'def {hook}(' in block for block in blocks), (
        f'The section of {hook} lacks its signature: a Python line `def {hook}(...`.'
    )
    examples = [block for block in blocks if 'hookimpl' in block]
    assert any(f'def {hook}(' in block for block in examples), (
        f'The section of {hook} lacks a fenced python example implementing it '
        'with @hookimpl.'
    )


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    unknown = sorted(set(hook_sections(doc_text())) - set(contract_hooks()))
    assert not unknown, f'docs/hooks.md documents hooks that do not exist: {unknown}'


def test_python_blocks_are_valid_python() -> None:
    for number, block in enumerate(PYTHON_BLOCK.findall(doc_text()), start=1):
        try:
            ast.parse(block)
        except SyntaxError as err:
            pytest.fail(f'Python block {number} of docs/hooks.md: {err}\n{block}')


@pytest.mark.parametrize('name', public_run_view_names())
def test_every_run_view_attribute_is_documented(name: str) -> None:
    quoted = re.compile(rf'`[^`\n]*\b{re.escape(name)}\b[^`\n]*`')
    assert quoted.search(run_view_section(doc_text())), (
        f'RunView.{name} is not in the RunView section of docs/hooks.md.'
    )
