"""The command line: ``python -m instructor.grading release | grade | report``."""
from __future__ import annotations

import argparse
from pathlib import Path

from instructor.grading import settings
from instructor.grading.grade import grade
from instructor.grading.release import release
from instructor.grading.report import report
from instructor.grading.settings import Limits
from instructor.grading.submissions import find_submissions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instructor.grading",
                                     description="Release the labs and grade submissions in a sandbox.")
    parser.add_argument("--workspace", default=settings.WORKSPACE,
                        help="nbgrader's course directory (default: _grading)")
    parser.add_argument("--source", default=settings.SOURCE, help="folder of the instructor labs (default: notebooks)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("release", help="student versions of the labs into release/ (and a zip per lab)")
    p.add_argument("--out", default=settings.RELEASE)
    p.add_argument("--lab", action="append", help="only this lab (repeatable)")

    d = Limits()
    p = sub.add_parser("grade", help="autograde a folder or zip of submissions",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=find_submissions.__doc__.split("\n\n", 1)[1])
    p.add_argument("submissions", help="folder (or .zip) of submitted notebooks")
    p.add_argument("--out", default=settings.OUT, help="where grades.csv and feedback/ go (default: grades)")
    p.add_argument("--lab", action="append", help="grade this lab only (repeatable); default: every lab found")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time (default 1)")
    p.add_argument("--timeout", type=int, default=d.cell_timeout, help=f"seconds per cell (default {d.cell_timeout})")
    p.add_argument("--test-timeout", type=int, default=d.test_timeout,
                   help=f"seconds per hidden test (default {d.test_timeout})")
    p.add_argument("--submission-timeout", type=int, default=d.submission_timeout,
                   help=f"seconds per submission, all runs together (default {d.submission_timeout})")
    p.add_argument("--memory", type=int, default=d.memory_mb, help=f"MiB per submission (default {d.memory_mb})")
    p.add_argument("--student-regexp", default=None,
                   help=r"regexp with a group (?P<student_id>...) applied to file/folder names "
                        r"(default: ^(?P<student_id>[^_\s]+)_)")
    p.add_argument("--roster", default=None, help="file with one student id per line: absent ones are 'missing'")
    p.add_argument("--hidden", default=str(settings.HIDDEN), help="folder of the hidden tests (default: %(default)s)")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="DANGEROUS: run student code without the sandbox, as the user running the grader "
                        "(it can then read and change your files and reach the network). Only for trusted code.")

    p = sub.add_parser("report", help="grades.csv and feedback again from the gradebook (after manual grading)")
    p.add_argument("--out", default=settings.OUT)

    args = parser.parse_args(argv)
    if args.command == "release":
        release(args.source, args.out, args.workspace, args.lab)
    elif args.command == "grade":
        roster = []
        if args.roster:
            roster = [ln.strip() for ln in Path(args.roster).read_text().splitlines() if ln.strip()]
        limits = Limits(cell_timeout=args.timeout, test_timeout=args.test_timeout,
                        submission_timeout=args.submission_timeout, memory_mb=args.memory)
        grade(args.submissions, args.out, args.source, args.workspace, args.lab, limits, args.jobs,
              args.student_regexp, roster, not args.unsafe_no_sandbox, args.hidden)
    else:
        results = report(args.out, args.workspace)
        print(f"wrote {Path(args.out) / 'grades.csv'} ({len(results)} rows) and the feedback")
    return 0
