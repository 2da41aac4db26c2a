"""nbgrader's course directory (``_grading/``), rebuilt from the lab notebooks whenever they change.

::

    _grading/
      nbgrader_config.py              written here; calls instructor.grading.nbgrader_config.configure()
      gradebook.db                    nbgrader's gradebook (cells, points, scores, manual grades)
      source/<lab>/<lab>.ipynb        copied from notebooks/ (never edit here: edit notebooks/)
      release/<lab>/<lab>.ipynb       the student version (nbgrader generate_assignment)
      submitted/<student>/<lab>/      left to nbgrader's own `collect` / `zip_collect` (never written by us)
      sanitized/<student>/<lab>/      the copies we grade: read from the submissions, repaired
      results/<student>/<lab>.json    what the sandboxed run and the hidden tests decided (harness.py)
      autograded/<student>/<lab>/     the graded copies with the verdicts (nbgrader autograde, for formgrader)
      logs/<lab>/<student>.log        what happened while grading a submission
      scratch/                        unpacked zips
      last_run.json                   what the last `grade` saw, for `report`
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from instructor.grading import settings


def find_labs(source: str | Path = settings.SOURCE) -> list[Path]:
    """The lab notebooks of the course, sorted: ``source/lab*.ipynb``."""
    return sorted(p for p in Path(source).glob(settings.LAB_PATTERN) if p.is_file())


class Workspace:
    """nbgrader's course directory, kept in step with the lab notebooks."""

    def __init__(self, root: str | Path = settings.WORKSPACE, source: str | Path = settings.SOURCE):
        # nbgrader runs the `alembic` command of its environment: make sure it is on PATH even when the
        # virtual environment is not activated (`.venv/bin/python -m instructor.grading`)
        bindir = str(Path(sys.executable).parent)
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        self.root = Path(root).resolve()
        self.source = Path(source).resolve()
        self._api = None

    def path(self, step: str, student: str | None, lab: str) -> Path:
        if step in ("source", "release"):
            return self.root / step / lab / f"{lab}.ipynb"
        if step == "results":
            return self.root / "results" / student / f"{lab}.json"
        return self.root / step / student / lab / f"{lab}.ipynb"

    @property
    def db(self) -> Path:
        return self.root / "gradebook.db"

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "nbgrader_config.py").write_text(
            "# Written by `python -m instructor.grading` (make release / make grade), rewritten on each run.\n"
            "# The course's nbgrader settings live in instructor/grading/nbgrader_config.py: edit that file.\n"
            "import sys\n"
            f"sys.path.insert(0, {str(settings.ROOT)!r})\n"
            "from instructor.grading.nbgrader_config import configure\n\n"
            f"configure(get_config(), results_dir={str(self.root / 'results')!r})\n"
        )

    def config(self):
        from traitlets.config import Config

        from instructor.grading.nbgrader_config import configure

        c = configure(Config(), results_dir=str(self.root / "results"))
        c.CourseDirectory.root = str(self.root)
        c.CourseDirectory.submitted_directory = "sanitized"  # our commands record the repaired copies
        return c

    @property
    def api(self):
        if self._api is None:
            from nbgrader.apps import NbGraderAPI

            self._api = NbGraderAPI(config=self.config())
        return self._api

    def prepare(self, labs: list[str], force: bool = False) -> None:
        """Copy the labs into ``source/`` and run ``generate_assignment`` where a lab is new or changed."""
        self.write_config()
        for lab in labs:
            src = self.source / f"{lab}.ipynb"
            dst = self.path("source", None, lab)
            unchanged = dst.exists() and dst.read_bytes() == src.read_bytes()
            if unchanged and not force and self.path("release", None, lab).exists() and self.in_gradebook(lab):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            result = self.api.generate_assignment(lab, force=True)
            if not result["success"] and "Cannot add or remove cells" in result.get("log", ""):
                raise SystemExit(
                    f"{lab} gained or lost graded cells since it was graded in {self.root}, and nbgrader's "
                    "gradebook cannot follow. Keep the grades.csv you need, then delete that folder (its "
                    "manual grades go with it) or pass a new --workspace.")
            if not result["success"]:
                raise RuntimeError(f"nbgrader generate_assignment {lab} failed:\n{result.get('log', '')}"
                                   f"\n{result.get('error', '')}")

    def in_gradebook(self, lab: str) -> bool:
        if not self.db.exists():
            return False
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(f"sqlite:///{self.db}", settings.COURSE_ID) as gb:
            try:
                gb.find_notebook(lab, lab)
                return True
            except MissingEntry:
                return False
