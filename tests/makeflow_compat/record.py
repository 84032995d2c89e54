"""Record what the real makeflow does with each workflow here (a developer's tool, not a test).

    python3 tests/makeflow_compat/record.py [NAME...]

For each folder: copy its Makeflow and in/ to a fresh directory, run `makeflow -T local
Makeflow`, and write makeflow.json: its exit status (or "fatal" and the message when it
stopped on the workflow: cctools' fatal() then hangs, so it is killed; or "failed rules" and
their commands when a rule failed, after which makeflow exits 0) and every file the run made,
with its content. tests/test_makeflow_compat.py runs vinemake on the same workflows and
compares. Needs `makeflow` (Debian: coop-computing-tools and openmpi-bin).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_OUTPUTS = re.compile(r"^(Makeflow|.*\.makeflowlog|.*\.wqlog|makeflow\.failed\.\d+/.*)$")


def files_of(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(errors="replace")
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def record(case: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(case / "Makeflow", work / "Makeflow")
        if (case / "in").is_dir():
            shutil.copytree(case / "in", work, dirs_exist_ok=True)
        before = files_of(work)
        log = work / ".makeflow-output"
        with open(log, "w") as out:
            proc = subprocess.Popen(["makeflow", "-T", "local", "Makeflow"], cwd=work,
                                    stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if "fatal:" in log.read_text(errors="replace"):
                    time.sleep(0.5)
                    break
                time.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        text = log.read_text(errors="replace")
        log.unlink()
        fatal = re.search(r"fatal: (.*)", text)
        after = files_of(work)
        made = {name: content for name, content in after.items()
                if name not in before and not NOT_OUTPUTS.search(name)}
        # A failed rule leaves makeflow.failed.N/INFO.json, and makeflow still exits 0.
        failed = sorted(json.loads(content)["command"] for name, content in after.items()
                        if re.match(r"makeflow\.failed\.\d+/INFO\.json$", name))
        result: dict = {"exit": "fatal" if fatal else "failed rules" if failed
                        else proc.returncode}
        if fatal:
            result["message"] = fatal.group(1).strip()
        if failed:
            result["failed"] = failed
        result["files"] = made
        return result


def main(names: list[str]) -> None:
    if shutil.which("makeflow") is None:
        sys.exit("makeflow is not installed")
    cases = [HERE / n for n in names] if names else sorted(
        p for p in HERE.iterdir() if (p / "Makeflow").is_file())
    version = subprocess.run(["makeflow", "--version"], capture_output=True, text=True,
                             env={**os.environ, "LC_ALL": "C"}).stdout.splitlines()[0]
    for case in cases:
        result = {"makeflow": version, **record(case)}
        (case / "makeflow.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"{case.name}: {result['exit']}")


if __name__ == "__main__":
    main(sys.argv[1:])
