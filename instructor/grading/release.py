"""``make release``: the student versions of the labs, one folder and one zip per lab."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from instructor.grading import settings
from instructor.grading.workspace import Workspace, find_labs


def write_zip(zpath: Path, files: list[tuple[Path, str]]) -> None:
    """A reproducible zip: sorted entries, fixed timestamps and permissions."""
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, arcname in sorted(files, key=lambda f: f[1]):
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def release(source: str | Path = settings.SOURCE, out: str | Path = settings.RELEASE,
            workspace: str | Path = settings.WORKSPACE, labs: list[str] | None = None) -> list[Path]:
    """Student versions of the labs into ``out/<lab>/<lab>.ipynb`` plus ``out/<lab>.zip``; returns the zips."""
    names = labs or [p.stem for p in find_labs(source)]
    if not names:
        raise SystemExit(f"no labs ({settings.LAB_PATTERN}) in {source}: run from the repository root or pass --source")
    ws = Workspace(workspace, source)
    ws.prepare(names, force=True)
    out = Path(out)
    zips = []
    for lab in names:
        built = ws.root / "release" / lab
        dest = out / lab
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(built, dest)
        files = [(p, f"{lab}/{p.relative_to(dest).as_posix()}") for p in dest.rglob("*") if p.is_file()]
        zpath = out / f"{lab}.zip"
        write_zip(zpath, files)
        zips.append(zpath)
        print(f"released {lab}: {dest / (lab + '.ipynb')} and {zpath}")
    return zips
