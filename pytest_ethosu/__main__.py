"""``python -m pytest_ethosu merge shard-*.json -o merged.json [--html out.html] [--markdown out.md]``.

Exit codes: 0 merged, 2 inputs refused or an output could not be written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from . import merge
from .settings import SUMMARY_MODES


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
        document = merge.merge_files(args.reports)
    except merge.MergeError as exc:
        print(f"pytest_ethosu merge: error: {exc}", file=sys.stderr)
        return 2
    outputs: list[tuple[Path, str, bool]] = []
    if args.output:
        outputs.append((args.output, merge.dumps(document), False))
    if args.html:
        from .html_report import HtmlReportError, render

        try:
            outputs.append((args.html, render(document), False))
        except HtmlReportError as exc:
            print(f"pytest_ethosu merge: error: {exc}", file=sys.stderr)
            return 2
    if args.markdown:
        outputs.append((args.markdown, merge.markdown(document["estimates"]), True))
    status = 0
    for path, text, append in outputs:
        try:
            with open(path, "a" if append else "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            print(f"pytest_ethosu merge: error: could not write {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 2
    if not args.quiet:
        print(f"merged {len(args.reports)} report(s): {len(document['estimates'])} estimate(s), "
              f"Vela {document['vela_version']}")
        width = shutil.get_terminal_size(fallback=(80, 24)).columns  # as pytest's: $COLUMNS, else 80 piped
        width = width if width >= 40 else 80
        print("\n".join(merge.summary_lines(document["estimates"], args.summary, args.verbose, width)))
    return status


if __name__ == "__main__":
    sys.exit(main())
