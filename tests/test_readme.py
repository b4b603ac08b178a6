"""The README's Python API block runs as written, on the bundled and shared real data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_python_api() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README.md has no ```python block under '## Python API'"
    return match.group(1)


def test_readme_python_api_runs_as_written(tmp_path):
    code = readme_python_api()
    script = tmp_path / "readme_api.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the last line prints the B-cell markers from the store: real B-cell genes must lead
    assert "CD79A" in proc.stdout and "MS4A1" in proc.stdout, proc.stdout[-2000:]
    assert (tmp_path / "my_db").exists()
