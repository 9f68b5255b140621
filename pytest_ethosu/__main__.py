"""``python -m pytest_ethosu merge shard-*.json -o merged.json [--html out.html] [--markdown out.md]``.

Exit codes: 0 merged, 2 inputs refused or an output could not be written.  Every input is read
and checked, and every output made, before the first file is written; an output that is one of
the inputs is refused.  Each output is written whole or not at all (``files.write_atomic``; the
Markdown is appended with ``files.append_text``, cut back on failure).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import escape, files, merge
from .options import SUMMARY_MODES


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_ethosu",
                                     description="Tools for pytest-ethosu's JSON reports.")
    commands = parser.add_subparsers(dest="command", required=True)
    merging = commands.add_parser(
        "merge", help="merge --ethosu-json reports from several sessions (CI shards) into one",
        description="Merge --ethosu-json reports from several sessions into one, as if one session ran "
                    "them all. Refuses reports that disagree (same test and name twice, another schema, "
                    "another Vela version).")
    merging.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
    merging.add_argument("-o", "--output", type=Path, help="write the merged JSON report here")
    merging.add_argument("--html", type=Path, metavar="PATH", help="write the HTML report here")
    merging.add_argument("--markdown", type=Path, metavar="PATH",
                         help="append the Markdown summary here (with Mermaid charts of regressions)")
    merging.add_argument("-q", "--quiet", action="store_true", help="do not print the summary")
    merging.add_argument("-v", "--verbose", action="count", default=0,
                         help="more layers and findings in the summary, full names (as pytest -v)")
    merging.add_argument("--summary", choices=SUMMARY_MODES, default="short",
                         help="the summary, as --ethosu-summary: none, short (default) or full")
    args = parser.parse_args(argv)

    try:
        _refuse_overwriting_inputs(args)
        document = merge.merge_files(args.reports)
        outputs = _outputs(args, document)
        lines = [] if args.quiet else _summary(args, document)
    except merge.MergeError as exc:
        print(f"pytest_ethosu merge: error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for path, text, append in outputs:  # each file whole or as it was: never half-written
        try:
            if append:
                files.append_text(path, text)
            else:
                files.write_atomic(path, text)
        except OSError as exc:
            print(f"pytest_ethosu merge: error: could not write {path}: {exc.strerror or exc} "
                  "(the file is as it was)", file=sys.stderr)
            status = 2
    if lines:
        print("\n".join(lines))
    return status


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same path, through a symlink or a hard link too."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def _refuse_overwriting_inputs(args: argparse.Namespace) -> None:
    outputs = [(option, path) for option, path in (("-o", args.output), ("--html", args.html),
                                                    ("--markdown", args.markdown)) if path is not None]
    for option, path in outputs:
        for report in args.reports:
            if _same_file(path, report):
                raise merge.MergeError(f"{option} {path} is the input {report}: write the merged "
                                       "output to a file of its own")
    for i, (option, path) in enumerate(outputs):
        for other, second in outputs[i + 1:]:
            if _same_file(path, second):
                raise merge.MergeError(f"{option} {path} and {other} {second} are one file: give each output its own")


def _outputs(args: argparse.Namespace, document: dict[str, Any]) -> list[tuple[Path, str, bool]]:
    """Every output's text, made before any is written: (path, text, append)."""
    outputs: list[tuple[Path, str, bool]] = []
    if args.output:
        outputs.append((args.output, merge.dumps(document), False))
    if args.html:
        from .html_report import HtmlReportError, render

        try:
            outputs.append((args.html, render(document), False))
        except HtmlReportError as exc:
            raise merge.MergeError(str(exc)) from exc
    if args.markdown:
        outputs.append((args.markdown, merge.markdown(document["estimates"]), True))
    return outputs


def _summary(args: argparse.Namespace, document: dict[str, Any]) -> list[str]:
    width = shutil.get_terminal_size(fallback=(80, 24)).columns  # as pytest's: $COLUMNS, else 80 piped
    width = width if width >= 40 else 80
    return [f"merged {len(args.reports)} report(s): {len(document['estimates'])} estimate(s), "
            f"Vela {escape.terminal(document['vela_version'])}",
            *merge.summary_lines(document["estimates"], args.summary, args.verbose, width)]


if __name__ == "__main__":
    sys.exit(main())
