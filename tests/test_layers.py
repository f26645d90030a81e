"""The library under the harness: importing or using the library never loads the benchmark
harness (aeclust.bench, aeclust.evaluation) or its extra (matplotlib), and the harness without
its extra fails with one line naming it."""

import subprocess
import sys
import textwrap


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


def test_the_library_and_the_cli_never_import_the_harness_or_matplotlib():
    done = _python(
        """
        import sys
        import numpy as np
        import aeclust, aeclust.cli
        from aeclust import DEC
        x = np.random.default_rng(0).random((40, 6)).astype(np.float32)
        DEC(3, autoencoder=[8, 2], pretrain_epochs=1, max_iter=4, batch_size=20).fit(x)
        loaded = [m for m in sys.modules if m.split(".")[:2] in (["aeclust", "bench"],
                  ["aeclust", "evaluation"]) or m.split(".")[0] == "matplotlib"]
        print(sorted(loaded))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_harness_without_its_extra_says_which_extra():
    done = _python(
        """
        import importlib.util
        import sys

        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "matplotlib" else real(name, *a)
        sys.modules["matplotlib"] = None  # as if the bench extra were not installed
        from aeclust.cli import main

        code = main(["bench", "baselines", "--quick", "--datasets", "usps", "--seeds", "1"])
        print("exit", code)
        """
    )
    assert "exit 2" in done.stdout, done.stderr
    assert "pip install 'aeclust[bench]'" in done.stderr
    assert "Traceback" not in done.stderr
