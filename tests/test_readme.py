"""Every Python example in README.md runs as written (at small sizes, offline), so it cannot rot.

Each ```python block runs in a fresh namespace in an empty folder that holds small generated
images under the file names the block mentions, decoder files for the ``.pth`` names, and
seeded weight files in the released AdaIN layouts in the weights cache. Sizes of 100 px and
more, and iteration counts, are shrunk so a block takes seconds. A block that genuinely needs
downloads opts out with the comment ``# readme-test: skip`` (and says why on that line).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from painterly.weights import REGISTRY, cached_path, layout_keys

from conftest import make_scene
from test_adain import write_decoder

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP_MARKER = "# readme-test: skip"


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block."""
    text = README.read_text()
    return [(text[: match.start()].count("\n") + 1, match.group(1))
            for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.M | re.S)]


def shrunk(code: str) -> str:
    """The block at test sizes: sizes of 100 px or more become 32, iterations become 2."""
    code = re.sub(r"\b((?:content_|style_)?size)=(\d{3,})", r"\1=32", code)
    return re.sub(r"\biterations=(\d+)", "iterations=2", code)


def prepare_inputs(code: str, folder: Path) -> None:
    """Generated images and decoders under the names the block reads."""
    for index, name in enumerate(sorted(set(re.findall(r"[\"']([\w./-]+\.(?:jpg|jpeg|png))[\"']", code)))):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        make_scene(48, 32, seed=index).save(folder / name)
    for stem, suffix, count in re.findall(r"f[\"']([\w/-]*)\{i:0\dd\}(\.\w+)[\"'].*?range\((\d+)\)", code):
        for i in range(int(count)):
            make_scene(48, 32, seed=i).save(folder / f"{stem}{i:03d}{suffix}")
    for name in set(re.findall(r"[\"']([\w./-]+\.pth)[\"']", code)):
        write_decoder(folder / name)


@pytest.fixture
def released_adain_weights() -> None:
    generator = torch.Generator().manual_seed(0)
    for file in REGISTRY["adain"].files.values():
        if file.layout == "decoder":
            write_decoder(cached_path(file))
            continue
        state = {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in layout_keys(file.layout).items()}
        cached_path(file).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, cached_path(file))


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("line, code", python_blocks(), ids=lambda value: f"line{value}" if isinstance(value, int) else "")
def test_readme_python_block_runs(line, code, tmp_path, monkeypatch, released_adain_weights):
    if SKIP_MARKER in code:
        pytest.skip(f"README.md line {line} opts out: {code.split(SKIP_MARKER, 1)[1].splitlines()[0].strip()}")
    prepare_inputs(code, tmp_path)
    monkeypatch.chdir(tmp_path)
    exec(compile(shrunk(code), f"README.md, block at line {line}", "exec"), {"__name__": "readme"})
