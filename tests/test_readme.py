"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DRDFL_CACHE_DIR", str(tmp_path))
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["dfl", "threed"]
    for line in lines:
        regrets = [float(v) for v in re.findall(r"[-\d.]+(?:e[-+]?\d+)?", line.split(" ", 1)[1])]
        assert len(regrets) == 2 and all(r >= 0 for r in regrets)
