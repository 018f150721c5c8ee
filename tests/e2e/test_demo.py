"""`make demo` runs to completion and shows what it promises."""

from __future__ import annotations

import subprocess
import sys

from tablechain.platform.demo import NodeProcess


def test_demo_runs_and_cleans_up() -> None:
    result = subprocess.run([sys.executable, "-m", "tablechain.platform.demo"],
                            capture_output=True, text=True, timeout=120,
                            env={**NodeProcess.environment(), "COLUMNS": "120"})
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "alice creates tableWithRule" in out
    assert out.count("tefTABLE_RULEDISSATISFIED") == 3  # Fields, $account, CountLimit
    assert "bob deletes id=1" in out and "affected 0" in out
    assert "node stopped (exit code 0)" in out
    assert "the data survived the restart" in out
    assert "bob reads: ids [3, 7]" in out
    assert "flu, confidential" in out and "tefTABLE_CONFIDENTIAL" in out
    assert "recomputed: ok" in out and "found table" in out and "tableWithRule" in out
    workdir = out.rsplit("cleaned up ", 1)[1].split()[0]
    import os

    assert not os.path.exists(workdir)
