"""Build hook: the wheel carries the dbt project, the Prefect flows and the settings file next to the library.

They live at the repository root (where ``dbt build`` and ``prefect deploy`` run from) and are copied
into ``ctsync/_project/`` of the wheel, where ``ctsync init`` and the dbt package entry find them.
Everything else is in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "prefect.yaml", "ctsync.yml", "ctsync.schema.json")
PROJECT_FOLDERS = ("models", "macros", "seeds", "tests/dbt", "flows")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildWithProject(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the source tree
        target = Path(self.build_lib) / "ctsync" / "_project"
        shutil.rmtree(target, ignore_errors=True)  # a build folder may hold an older copy
        target.mkdir(parents=True)
        for name in PROJECT_FILES:
            shutil.copy2(ROOT / name, target / name)
        for name in PROJECT_FOLDERS:
            shutil.copytree(ROOT / name, target / name, ignore=SKIPPED, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithProject})
