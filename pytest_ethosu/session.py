"""The session: its state and its hooks, registered as the plugin ``ethosu-session``.

Like ``LogXML`` in pytest's ``junitxml.py``, one object owns what the session gathers and the
hooks that gather and report it:

- ``pytest_runtest_makereport`` turns the plugin's errors into one-screen failures, attaches
  Vela's console output to failures, and after teardown writes the test's pending baselines if
  every phase passed (subtests included; under pytest-rerunfailures the last attempt counts);
- the collection hooks (``pytest_ignore_collect``, ``pytest_make_collect_report``,
  ``pytest_itemcollected``, ``pytest_collection_finish``) note what the run saw in full, so that
  ``unused.py`` judges only those baselines;
- an xdist worker sends each test's records with its teardown report (read by
  ``pytest_runtest_logreport`` on the controller, so a worker that dies later loses none), and
  what collection saw, the counts and its errors through ``workeroutput`` at
  ``pytest_sessionfinish`` (workers never write session-level files); the controller deletes
  unused baselines under ``--ethosu-update`` and writes the JSON and Markdown reports;
- ``pytest_terminal_summary`` prints the lines ``report.summary_lines`` builds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import baseline, cache, check, escape, report, scratch, unused
from .check import Context, Pending, item_state_key
from .errors import BaselineError, EthosuError
from .estimator import Estimator, shown_path
from .files import append_text, write_atomic
from .gate import FAILED, Status
from .options import two_word_paths
from .record import RECORD_KEYS, Record
from .settings import Settings
from .vela import expected_core, vela_version


class EthosuSession:
    """Per-process state and the hooks around it.  Under xdist each worker has one; the
    controller's merges theirs."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = Settings.from_config(config)
        self.rootdir = config.rootpath
        self.is_worker = hasattr(config, "workerinput")
        # pytest-html is asked for a report: each test's row gets its estimates' charts
        self.pytest_html = bool(config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None))
        # records carry every layer and the whole comparison (for the JSON and HTML reports and the per-layer tables)
        self.detailed = (self.settings.json_path is not None or self.settings.html_path is not None
                         or self.pytest_html or self.settings.layers)
        self._estimator: Estimator | None = None
        self._scratch: str | None = None
        self.results: dict[str, list[Record]] = {}  # by node id: the last attempt's records
        self.counts: Counter[str] = Counter()
        self.produced: set[str] = set()  # baseline files that this session's checks read or wrote
        self.passed_tests: set[str] = set()  # tests whose final outcome, teardown included, was a pass
        self.failing: set[str] = set()  # tests with a phase (or subtest) that did not pass in this attempt
        self.collection = unused.Collection(last_failed=bool(config.getoption("lf", False)))
        self._collected_items: set[str] = set()  # every item collection made, before any was dropped
        self.deleted: list[Path] = []
        self.interrupted = False
        self.output_errors: list[str] = []
        self.reports_written: list[tuple[str, Path]] = []  # (what, where), named at the summary's end
        settings = self.settings
        self.context = Context(settings.baseline_root, self.rootdir, settings.update, settings.strict,
                               settings.drift_policy, config.get_verbosity(), self.relative, self.update_command,
                               self.wants_detail)
        if settings.update and not self.is_worker and config.getoption("dist", "no") == "each":
            raise pytest.UsageError("--ethosu-update under --dist each: every worker runs every test and writes its "
                                    "baselines, also for a test that fails on another worker. Update without "
                                    "--dist each (-n N alone shares the tests out).")
        for words in two_word_paths(list(config.invocation_params.args)) if not self.is_worker else ():
            self.output_errors.append(
                f"{words}: write it as {words.replace(' ', '=', 1)}. Given as two words, pytest may take "
                f"the path for a test path when it looks for the rootdir (it chose {self.rootdir}).")
        if (config.getoption("cacheclear", False) and not self.is_worker and settings.cache_dir is not None
                and not settings.cache_owned and settings.cache_dir.exists()
                and not cache.clear(settings.cache_dir)):
            self.output_errors.append(f"--cache-clear left {self.relative(settings.cache_dir)} alone: it is "
                                      "not a pytest-ethosu cache (no CACHEDIR.TAG from this plugin)")

    def wants_detail(self, status: Status) -> bool:
        """Whether an estimate's record carries every layer: for the JSON and HTML reports and
        pytest-html, and for a regression's chart in the Markdown summary."""
        return self.detailed or (self.settings.markdown_path is not None and status in FAILED)

    @property
    def estimator(self) -> Estimator:
        """Started on first use: a session that never estimates starts no worker."""
        if self._estimator is None:
            self._scratch = str(scratch.make())  # removed by close(), or on SIGTERM
            directory = self.settings.cache_dir
            pytest_cache = getattr(self.config, "cache", None)
            prepare = (lambda: pytest_cache.mkdir("ethosu")) if self.settings.cache_owned and pytest_cache else None
            store = cache.EstimateCache(directory, self.settings.cache_owned, prepare) if directory else None
            self._estimator = Estimator(self.rootdir, Path(self._scratch), self.settings.timeout, cache=store)
        return self._estimator

    def relative(self, path: Path) -> str:
        return shown_path(path, self.rootdir)

    def runnable(self, nodeid: str) -> str:
        """A node id as the command line takes it from the directory pytest was started in
        (node ids are relative to the rootdir)."""
        file_part, sep, rest = nodeid.partition("::")
        start = self.config.invocation_params.dir
        try:
            file_part = os.path.relpath(self.rootdir / file_part, start)
        except ValueError:  # another drive
            file_part = str(self.rootdir / file_part)
        return Path(file_part).as_posix() + sep + rest

    def update_command(self, nodeids: list[str]) -> str:
        """``pytest --ethosu-update`` with this run's options and the given tests: pasted, it
        touches those tests' baselines only (all of them when ``nodeids`` is empty)."""
        return report.accept_command(None, [*self.settings.replay, *map(self.runnable, sorted(set(nodeids)))])

    @property
    def records(self) -> list[Record]:
        return [record for records in self.results.values() for record in records]

    def node_path(self, path: Path) -> str | None:
        """A path as node ids spell it (relative to the rootdir, ``/``); None outside the rootdir."""
        try:
            return Path(os.path.relpath(path, self.rootdir)).as_posix()
        except ValueError:  # another drive
            return None

    def close(self) -> None:
        if self._estimator is not None:
            self._estimator.close()
        if self._scratch is not None:
            scratch.remove(self._scratch)

    # -- hooks -----------------------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str:
        target = self.settings.target
        shown = ", ".join(f"{k}={v}" for k, v in target.items() if v) or "Vela's defaults"
        mode = " (updating baselines)" if self.settings.update else ""
        args = target.get("vela_args") or ""
        core = expected_core(target.get("accelerator") or "ethos-u55-256", str(args).split())
        return escape.terminal(f"ethosu: Vela {vela_version()} ({core} core), target {shown}, baselines in "
                               f"{self.relative(self.settings.baseline_root)}{mode}")

    # -- collection: what the run saw in full (unused.py judges only that) ---------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config
                              ) -> Generator[None, bool | None, bool | None]:
        ignored = yield
        shown = self.node_path(collection_path) if ignored else None
        if shown is not None:
            self.collection.ignored.add(shown)
        return ignored

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector
                                   ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        collected = yield
        where = collector.nodeid.partition("::")[0]
        if isinstance(collector, pytest.File):
            (self.collection.files if collected.passed else self.collection.partial).add(where)
        elif not collected.passed:  # a module skip, an import or conftest error, a broken class
            is_directory = isinstance(collector, (pytest.Directory, pytest.Session))
            (self.collection.broken if is_directory else self.collection.partial).add(where)
        return collected

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        self._collected_items.add(item.nodeid)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        forked = [item.nodeid for item in session.items if "ethosu_perf" in getattr(item, "fixturenames", ())
                  and (self.config.getoption("forked", False) or item.get_closest_marker("forked"))]
        if forked:  # a forked child's estimates, counts and worker die with it
            raise pytest.UsageError(
                f"ethosu_perf does not run under pytest-forked (--forked or @pytest.mark.forked): {forked[0]}"
                f"{f' and {len(forked) - 1} more' if len(forked) > 1 else ''}; its estimates would never reach "
                "the baselines, summary or reports. Run it without forking; -n N (pytest-xdist) runs tests in parallel.")
        self.collection.collected.update(item.nodeid for item in session.items)
        # an item collected but not run was deselected (-k, -m, --deselect, --lf) or dropped without
        # pytest_deselected (pytest-shard, a conftest's items[:] = ...): its file is partial either way
        dropped = self._collected_items - self.collection.collected
        self.collection.partial.update(nodeid.partition("::")[0] for nodeid in dropped)
        if self.settings.accelerators:  # the option's matrix: the run chose these tests' accelerators
            for item in session.items:
                callspec = getattr(item, "callspec", None)
                if (callspec is not None and "ethosu_accelerator" in callspec.params
                        and not any("accelerators" in m.kwargs for m in item.iter_markers("ethosu"))):
                    self.collection.matrix.add(item.nodeid[:len(item.nodeid) - len(callspec.id) - 2])
        start = self.config.invocation_params.dir
        for argument in self.config.args:
            path, sep, node = argument.partition("::")
            shown = self.node_path(start / path)
            if shown is None:
                continue
            self.collection.arguments.append(shown + sep + node)
            if sep:  # a file::test argument: only part of the file was collected
                self.collection.partial.add(shown)
        # --ignore of a path that is not there (deleted, or outside a sparse checkout): never visited
        for ignored in self.config.getoption("ignore", None) or []:
            shown = self.node_path(start / ignored)
            if shown is not None:
                self.collection.ignored.add(shown)
        # pytest matches --ignore-glob patterns made absolute from where it started
        globs = [str(start / str(g)) for g in self.config.getoption("ignore_glob", None) or []]
        for plugin in self.config.pluginmanager.get_plugins():  # conftests' collect_ignore(_glob), as --ignore
            where = Path(getattr(plugin, "__file__", None) or "x")
            if where.name != "conftest.py":
                continue
            for entry in getattr(plugin, "collect_ignore", None) or []:
                shown = self.node_path(where.parent / str(entry))
                if shown is not None:
                    self.collection.ignored.add(shown)
            globs += [str(where.parent / str(g)) for g in getattr(plugin, "collect_ignore_glob", None) or []]
        self.collection.ignore_globs = globs
        repeated = [item.nodeid for item in session.items if item.get_closest_marker("repeat")]
        self.collection.partial.update(nodeid.partition("::")[0] for nodeid in repeated)
        if (self.config.getoption("count", None) or 1) > 1:  # pytest-repeat: every test id has a new parameter
            self.collection.partial.update(self.collection.files)
        self.collection.complete = True

    # -- each test -------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        outcome = yield
        own = call.excinfo is not None and isinstance(call.excinfo.value, EthosuError)
        if own:
            assert call.excinfo is not None
            error = call.excinfo.value
            outcome.longrepr = escape.terminal_lines(f"{type(error).__name__}: {error}")
        nodeid = item.nodeid
        if call.when == "setup":
            self.failing.discard(nodeid)  # a new attempt: pytest-rerunfailures runs setup again
        if not outcome.passed:  # a subtest's report comes through here too, as "call"
            self.failing.add(nodeid)
        state = item.stash.get(item_state_key, None)
        if outcome.failed and not own and call.when != "setup" and state is not None and state.logs:
            outcome.sections.append(("Captured Vela output", escape.terminal_lines("\n".join(state.logs))))
        if call.when != "teardown":
            return outcome
        # the test's final outcome is known only now: a check made in a fixture's teardown is in
        records, errors = self.finish_item(item, nodeid not in self.failing)
        self.failing.discard(nodeid)
        if errors:
            outcome.outcome = "failed"
            outcome.longrepr = escape.terminal_lines("\n".join(errors))
        outcome.user_properties = list(item.user_properties)  # junitxml reads them from teardown's report
        if self.is_worker:  # to the controller with the test's report, so a worker that dies later loses none
            outcome.ethosu_records = json.dumps([r.to_json() for r in records])  # type: ignore[attr-defined]
        if self.pytest_html and records:
            from .html_report import extras_for_pytest_html

            # pytest-html 4's documented way: append to report.extras in a makereport wrapper
            outcome.extras = [*getattr(outcome, "extras", []), *extras_for_pytest_html(records)]  # type: ignore[attr-defined]
        return outcome

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """On the xdist controller: a worker's records, with its test's teardown report (the
        last attempt's replace an earlier one's)."""
        data = getattr(report, "ethosu_records", None)
        if not self.is_worker and report.when == "teardown" and isinstance(data, str):
            self.results[report.nodeid] = [Record.from_json(r) for r in json.loads(data)]

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self._estimator is not None:
            self.counts["vela_runs"] += self._estimator.vela_runs
            self.counts["advisor_runs"] += self._estimator.advisor_runs
            self.counts["cache_hits"] += self._estimator.cache_hits
            lowerer = self._estimator.lowerer
            if lowerer is not None:
                self.counts["lowerings"] += lowerer.runs
                self.counts["lowering_hits"] += lowerer.hits
        if self.is_worker:
            self.config.workeroutput["ethosu"] = json.dumps(self.worker_output())  # type: ignore[attr-defined]
            return
        # a usage error or pytest.exit in collection (exit 4) ends a run that judged nothing
        self.interrupted = exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED,
                                              pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.settings.update and not self.interrupted:
            self.deleted = self.delete_unused()
        records = self.sorted_records()
        settings = self.settings
        document = report.json_report(records, vela_version())
        if settings.json_path is not None:  # even when empty: a CI shard that ran nothing still merges
            self._write(settings.json_path, json.dumps(document, indent=2, sort_keys=True) + "\n", what="JSON report")
        if not records:
            return
        if settings.html_path is not None:
            from .html_report import HtmlReportError, render_records

            try:
                self._write(settings.html_path, render_records(records, vela_version()), what="HTML report")
            except HtmlReportError as exc:
                self.output_errors.append(f"could not write {settings.html_path}: {exc}")
        if settings.markdown_path is not None:
            from .html_report import markdown_charts

            rows = self.summary_rows(records, width=10_000, verbose=1)
            charts = markdown_charts(records)
            self._write(settings.markdown_path, report.markdown(rows, records) + (charts + "\n" if charts else ""),
                        append=True, what="Markdown summary")

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get("ethosu")
        if data:
            self.merge(json.loads(data))

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if self.is_worker or config.option.collectonly:
            return
        records = self.sorted_records()
        tr = terminalreporter
        if os.environ.get("GITHUB_ACTIONS") == "true":
            for line in report.github_annotations(records):
                tr.write_line(line)
        found = [] if self.settings.update and not self.interrupted else self.unused_baselines()
        if self.settings.update and found:
            self.output_errors.append(f"the session was interrupted, so {len(found)} unused baseline(s) were not "
                                      "deleted (they are listed below)")
        width = tr._tw.fullwidth
        summary = report.SessionSummary(
            records=records, rows=self.summary_rows(records, width, config.get_verbosity()), counts=self.counts,
            update=self.settings.update, deleted=[self.relative(p) for p in self.deleted],
            unused=[self.relative(u.path) for u in found], errors=self.output_errors,
            command=self.update_command, unused_tests=[u.target for u in found])
        lines = report.summary_lines(summary, self.settings.summary, config.get_verbosity(), width)
        if self.settings.layers:
            for record in records:
                lines += ["", report.layer_table(record)]
        if lines:
            tr.write_sep("=", "ethosu performance summary")
            for line in lines:
                tr.write_line(line)
        for what, path in self.reports_written:  # as pytest names its --junitxml file
            tr.write_sep("-", f"generated ethosu {what}: {escape.terminal(str(path))}")

    # -- after each test -------------------------------------------------------------------------

    def finish_item(self, item: pytest.Item, passed: bool) -> tuple[list[Record], list[str]]:
        """After the test's teardown: write its pending baselines if it passed; return its
        records (their status final; they replace an earlier attempt's) and write errors."""
        state = item.stash.get(item_state_key, None)
        if state is None:
            return [], []
        self.produced.update(state.baselines)
        errors = []
        records = []
        for pending in state.pending:
            status, failed, problems = check.finish(self.context, pending, passed)
            errors += failed
            self.output_errors += problems
            record = self._final(item, pending, status)
            if pending.name:
                shown = pending.name.encode("utf-8", "backslashreplace").decode("utf-8")  # xdist sends UTF-8
                item.user_properties.append((f"ethosu[{shown}]", json.dumps({
                    "accelerator": record.accelerator, "total_cycles": record.total_cycles,
                    "inference_ms": record.inference_ms, "cpu_ops": record.cpu_ops, "status": record.status.value,
                    "delta_percent": record.delta_percent})))
            records.append(record)
        self.results[item.nodeid] = records
        if passed and not errors:
            self.passed_tests.add(item.nodeid)
        else:
            self.passed_tests.discard(item.nodeid)
        state.pending.clear()
        state.finished = True  # a check after this would never be recorded (the fixture refuses it)
        return records, errors

    def _final(self, item: pytest.Item, pending: Pending, status: Status) -> Record:
        """The check's record with its final status, after ``pytest_ethosu_result`` hooks have
        seen it (once per estimate) and added what they keep with it.  A hook's failure, or a
        value JSON cannot hold, is reported in the summary; it changes neither the test's
        outcome nor what was written for it."""
        record = pending.record.with_status(status)
        data = record.to_json()
        where = f"{item.nodeid}" + (f" [{pending.name}]" if pending.name else "")
        try:
            self.config.hook.pytest_ethosu_result(item=item, name=pending.name, result=pending.result, record=data)
        except (Exception, pytest.fail.Exception, pytest.skip.Exception, SystemExit) as exc:  # reported; goes on
            self.output_errors.append(f"a pytest_ethosu_result hook raised {type(exc).__name__}: {exc} ({where})")
        extra = {}
        for key, value in data.items():
            if key in RECORD_KEYS:
                continue
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                self.output_errors.append(f"a pytest_ethosu_result hook added {key!r}, which JSON cannot hold "
                                          f"({exc}); it was left out ({where})")
                continue
            extra[key] = value
        return dataclasses.replace(record, extra=extra) if extra else record

    # -- end of session --------------------------------------------------------------------------

    def worker_output(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "produced": sorted(self.produced),
                "passed_tests": sorted(self.passed_tests), "collection": self.collection.to_json(),
                "errors": self.output_errors}

    def merge(self, data: dict[str, Any]) -> None:
        self.counts.update(data["counts"])
        self.produced.update(data["produced"])
        self.passed_tests.update(data["passed_tests"])
        self.output_errors.extend(e for e in data["errors"] if e not in self.output_errors)
        self.collection.merge(unused.Collection.from_json(data["collection"]))

    def unused_baselines(self) -> list[unused.Unused]:
        """The baselines this run may call unused (``unused.py`` has the rule): none when the
        tests' bodies did not run."""
        option = self.config.option
        if option.collectonly or any(getattr(option, name, False) for name in (
                "setuponly", "setupplan", "showfixtures", "show_fixtures_per_test")):
            return []
        return unused.find(self.settings.baseline_root, self.rootdir, self.collection, self.produced,
                           self.passed_tests)

    def delete_unused(self) -> list[Path]:
        removed = []
        for path in (u.path for u in self.unused_baselines()):
            try:
                baseline.remove(path, self.settings.baseline_root)
            except (OSError, BaselineError) as exc:
                self.output_errors.append(f"could not delete {self.relative(path)}: {exc}")
                continue
            removed.append(path)
        return removed

    def sorted_records(self) -> list[Record]:
        return sorted(self.records, key=lambda r: (r.test, r.name))

    def summary_rows(self, records: list[Record], width: int, verbose: int) -> list[dict[str, Any]]:
        """The summary's rows, after conftest hooks have changed them (a hook that raises is reported)."""
        return report.summary_rows(records, width, verbose, self.config.hook.pytest_ethosu_summary_row, self.config,
                                   self.output_errors)

    def _write(self, path: Path, text: str, what: str, append: bool = False) -> None:
        """Write a session-level output file; a failure is reported in the summary, never raised,
        and a report written is named at the summary's end."""
        try:
            if append:
                append_text(path, text)
            else:
                write_atomic(path, text)
        except OSError as exc:
            self.output_errors.append(f"could not write {path}: {exc.strerror or exc}")
        else:
            self.reports_written.append((what, path))
