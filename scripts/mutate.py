"""Break the code on purpose, one promise at a time, and check that the suite notices.

Each mutation below breaks one guarantee of the README (or one the issues asked for) in a
private copy of the repository and runs the tests that should catch it.  A mutation is
*killed* when those tests fail, *survived* when they pass (the suite does not protect that
promise).  The unmutated copy must pass the same tests first.

    python scripts/mutate.py            # all mutations, a table at the end
    python scripts/mutate.py umask nan  # only those whose name contains a word given
    python scripts/mutate.py --list     # the mutations, their promises and their tests

It never touches the working tree: each run copies the files git knows (as they are on disk)
into a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    promise: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation("write-in-place", "baselines are written atomically, never half-written",
             "pytest_ethosu/files.py", "        os.replace(tmp, path)\n",
             "        path.write_bytes(raw)\n        os.unlink(tmp)\n",
             ("tests/test_rules.py",)),
    Mutation("write-after-failed-test", "--ethosu-update writes a baseline only once its test has passed",
             "pytest_ethosu/check.py", "    if passed and pending.verdict.write:",
             "    if pending.verdict.write:",
             ("tests/test_gate.py::test_update_writes_nothing_when_the_test_fails_after_its_check",)),
    Mutation("per-metric-ignored", "per-metric tolerances override the default",
             "pytest_ethosu/compare.py", "        return self.per_metric.get(metric, self.default)",
             "        return self.default", ("tests/test_rules.py", "tests/test_gate.py::test_call_tolerance_beats_the_marker")),
    Mutation("call-rtol-ignored", "a tolerance in the call beats the marker",
             "pytest_ethosu/fixture.py", '[{"rtol": rtol, "atol": atol, "tolerances": tolerances}, self._marker,',
             '[{"rtol": None, "atol": atol, "tolerances": tolerances}, self._marker,',
             ("tests/test_gate.py::test_call_tolerance_beats_the_marker",)),
    Mutation("nan-tolerance", "tolerances are finite numbers >= 0",
             "pytest_ethosu/compare.py", "    if isinstance(value, bool) or not math.isfinite(number) or number < 0:",
             "    if isinstance(value, bool):", ("tests/test_rules.py",)),
    Mutation("cpu-fallback-passes", "a move to the CPU always fails",
             "pytest_ethosu/compare.py", 'REGRESSIONS = ("regressed", "to_cpu")',
             'REGRESSIONS = ("regressed",)',
             ("tests/test_rules.py", "tests/test_gate.py::test_cpu_fallback_always_fails")),
    Mutation("missing-passes", "a missing baseline fails with the command that creates it",
             "pytest_ethosu/gate.py", "        return Verdict(Status.MISSING, None, write=False, failure=Failure.MISSING)",
             "        return Verdict(Status.MISSING, None, write=False)",
             ("tests/test_rules.py", "tests/test_gate.py::test_create_then_pass_then_unchanged")),
    Mutation("broken-baseline-overwritten", "a broken baseline is never overwritten, not even by --ethosu-update",
             "pytest_ethosu/check.py",
             "    stored = baseline.load(read) if read.exists() else None  # a broken one fails here, kept",
             "    try:\n        stored = baseline.load(read) if read.exists() else None\n"
             "    except Exception:\n        stored = None",
             ("tests/test_gate.py::test_corrupt_baseline_is_reported_and_kept",)),
    Mutation("nan-in-baseline", "numbers in a baseline are finite, or the file is named",
             "pytest_ethosu/baseline.py", "    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:",
             "    if False:", ("tests/test_rules.py",)),
    Mutation("unused-follows-links", "unused-baseline deletion never leaves the baseline directory",
             "pytest_ethosu/baseline.py", "os.walk(root, followlinks=False)", "os.walk(root, followlinks=True)",
             ("tests/test_gate.py::test_baselines_of_deleted_tests_are_found_in_a_full_run",)),
    Mutation("unused-not-found", "baselines of deleted tests are reported where the run collected their file in full",
             "pytest_ethosu/unused.py", "    files = collection.complete_files()\n", "    files: set[str] = set()\n",
             ("tests/test_gate.py::test_baselines_of_deleted_tests_are_found_in_a_full_run",
              "tests/test_scope.py::test_unused_where_the_run_saw_everything")),
    Mutation("selection-deletes", "a selection never deletes a baseline (syrupy's per-location rule)",
             "pytest_ethosu/unused.py", "        return set() if self.last_failed else self.files - self.partial",
             "        return self.files", ("tests/test_scope.py::test_a_selection_never_deletes_a_baseline",)),
    Mutation("failed-test-loses-baselines", "a test that failed keeps its baselines",
             "pytest_ethosu/unused.py", "                target = owner if owner in passed else None",
             "                target = owner",
             ("tests/test_scope.py::test_failing_tests_keep_their_baselines_in_the_accelerator_matrix",)),
    Mutation("teardown-outcome-ignored", "a baseline is written only when the test passed, teardown included",
             "pytest_ethosu/session.py", "self.finish_item(item, nodeid not in self.failing)",
             "self.finish_item(item, True)",
             ("tests/test_scope.py::test_baselines_are_written_only_for_tests_that_passed_in_full",)),
    Mutation("obtained-name-kept", "no check name reaches another check's obtained file",
             "pytest_ethosu/baseline.py", " and not name.endswith(_ROLE_SUFFIXES)):", "):",
             ("tests/test_scope.py::test_one_file_per_test_and_name",)),
    Mutation("case-kept", "names that differ only in case get different files",
             "pytest_ethosu/baseline.py", "(_KEPT_PATH if keep_case else _KEPT)", "_KEPT_PATH",
             ("tests/test_scope.py::test_one_file_per_test_and_name",)),
    Mutation("duplicate-keys-pass", "a baseline with a key twice in one object is refused",
             "pytest_ethosu/baseline.py", "json.loads(text, object_pairs_hook=_unique_keys)", "json.loads(text)",
             ("tests/test_units.py::test_a_malformed_baseline_is_refused_naming_the_file",)),
    Mutation("umask-ignored", "files honour the umask",
             "pytest_ethosu/files.py", "        os.chmod(tmp, 0o666 & ~_umask())\n", "", ("tests/test_rules.py",)),
    Mutation("cache-unchecked", "cache entries are checked on read",
             "pytest_ethosu/cache.py",
             '            if set(entry) != {"format", "key", "run", "digest"} or entry["digest"] != _digest(entry["run"]):',
             "            if False:", ("tests/test_cache.py",)),
    Mutation("cache-clears-anything", "--cache-clear deletes only the plugin's own cache",
             "pytest_ethosu/cache.py", "    if not is_cache_dir(path):\n        return False\n", "",
             ("tests/test_cache.py::test_cache_clear_only_removes_a_directory_the_plugin_made",)),
    Mutation("cache-key-without-plugin", "the cache key covers the plugin's version",
             "pytest_ethosu/cache.py", '"plugin": plugin_version(),', '',
             ("tests/test_cache.py::test_key_covers_the_plugin_and_vela_versions",)),
    Mutation("console-not-captured", "Vela's console output is captured and shown only for failures",
             "pytest_ethosu/vela/engine.py", "    os.dup2(log.fileno(), 1)\n    os.dup2(log.fileno(), 2)\n", "",
             ("tests/test_options.py::test_vela_console_is_captured_not_printed",)),
    Mutation("crash-retried", "a model that crashed Vela is not fed to it again",
             "pytest_ethosu/estimator.py", "        if key in self._crashed:", "        if False:",
             ("tests/test_isolation.py::test_crashed_model_is_not_fed_to_vela_again",)),
    Mutation("stale-reply", "an interrupted exchange leaves no stale reply",
             "pytest_ethosu/worker.py", "            self.close(kill=True)  # a half-finished exchange",
             "            pass  # a half-finished exchange",
             ("tests/test_isolation.py::test_interrupted_exchange_leaves_no_stale_reply",)),
    Mutation("no-timeout", "a hung Vela is stopped after the time limit",
             "pytest_ethosu/worker.py", "            reply = self._expect(proc, request_id, deadline)",
             "            reply = self._expect(proc, request_id, None)",
             ("tests/test_isolation.py::test_timeout_kills_the_worker",)),
    Mutation("start-retried", "a worker that cannot start is reported once, not retried per test",
             "pytest_ethosu/worker.py", "        if self._start_error is not None:\n            raise WorkerStartError(self._start_error)\n",
             "", ("tests/test_isolation.py::test_start_failure_is_reported_once_and_not_retried",)),
    Mutation("no-structure-check", "corrupt models are refused before Vela sees them",
             "pytest_ethosu/vela/tflite.py", "    check_buffers(model, len(data))\n    check_structure(model)\n", "",
             ("tests/test_estimate.py::test_directory_and_truncated",
              "tests/test_estimate.py::test_indices_out_of_range_are_refused_before_vela",
              "tests/test_hardening.py::test_structure_check_catches_header_corruption")),
    Mutation("reads-fifo", "only regular files are read",
             "pytest_ethosu/estimator.py", "    if not stat.S_ISREG(info.st_mode):", "    if False:",
             ("tests/test_estimate.py::test_only_regular_files_are_read",)),
    Mutation("match-by-position", "an inserted layer reads as added, not as a cascade",
             "pytest_ethosu/compare.py", "    named, pairs = _align(base, now,",
             "    return list(zip(base, now, strict=False))\n    named, pairs = _align(base, now,",
             ("tests/test_units.py", "tests/test_gate.py::test_layer_added_removed_renamed")),
    Mutation("no-drift-note", "another Vela, core or target is reported as drift",
             "pytest_ethosu/compare.py", "    if before.core != now.core:", "    if False:",
             ("tests/test_rules.py", "tests/test_gate.py::test_core_change_is_reported")),
    Mutation("generated-names", "baselines do not depend on the worker's history",
             "pytest_ethosu/vela/engine.py", "    return core, normalise_generated_names(rows, names)", "    return core, rows",
             ("tests/test_rules.py::test_generated_names_do_not_depend_on_the_workers_history",)),
    Mutation("warning-in-plugin", "EthosuWarning points at the user's test",
             "pytest_ethosu/fixture.py", "stacklevel=3)", "stacklevel=1)",
             ("tests/test_estimate.py::test_warning_points_at_the_test",)),
    # the gate's exact edges (tests/test_boundaries.py)
    Mutation("rtol-from-new-value", "a tolerance is measured from the baseline, not from the new value",
             "pytest_ethosu/compare.py", "    allowed = tol.allowed(base)\n", "    allowed = tol.allowed(now)\n",
             ("tests/test_boundaries.py::test_rtol_is_measured_from_the_baseline",
              "tests/test_boundaries.py::test_atol_and_rtol_add_up_from_the_baseline")),
    Mutation("limit-fails", "a change exactly at the tolerance passes",
             "pytest_ethosu/compare.py", "    if now - base > allowed:", "    if now - base >= allowed:",
             ("tests/test_boundaries.py::test_rtol_is_measured_from_the_baseline",)),
    Mutation("atol-or-rtol", "the allowance is atol + rtol * |baseline|",
             "pytest_ethosu/compare.py", "return self.atol + self.rtol * abs(baseline)",
             "return max(self.atol, self.rtol * abs(baseline))",
             ("tests/test_boundaries.py::test_atol_and_rtol_add_up_from_the_baseline",)),
    Mutation("marker-per-metric-wins", "a tolerance in the call beats the marker, per metric too",
             "pytest_ethosu/compare.py", "        for source in reversed(sources):", "        for source in sources:",
             ("tests/test_boundaries.py::test_the_calls_per_metric_tolerance_beats_the_markers",
              "tests/test_boundaries.py::test_call_per_metric_tolerance_beats_the_marker_in_a_session")),
    Mutation("call-per-metric-ignored", "ethosu_perf(..., tolerances=...) is applied",
             "pytest_ethosu/fixture.py", '[{"rtol": rtol, "atol": atol, "tolerances": tolerances}, self._marker,',
             '[{"rtol": rtol, "atol": atol, "tolerances": None}, self._marker,',
             ("tests/test_boundaries.py::test_call_per_metric_tolerance_beats_the_marker_in_a_session",)),
    Mutation("memo-ignores-target", "the memo answers only the same model on the same target",
             "pytest_ethosu/estimator.py", "        key = (loaded.sha256, (target, configs.sha256))\n        if key in self._memo",
             '        key = (loaded.sha256, ("", configs.sha256))\n        if key in self._memo',
             ("tests/test_boundaries.py::test_memo_answers_checks_and_verifications_alike",)),
    Mutation("verification-counted-as-test", "the advisor's verification compiles are counted as its own",
             "pytest_ethosu/estimator.py", "        return self.estimate(model, target, verifying=True)",
             "        return self.estimate(model, target)",
             ("tests/test_boundaries.py::test_memo_answers_checks_and_verifications_alike",)),
    Mutation("advice-rules-not-a-plugin", "the built-in rules are the ethosu-advisor plugin on the advice hook",
             "pytest_ethosu/advisor.py", "    findings.extend(advise(result, verify))\n", "",
             ("tests/test_advisor.py::test_advice_in_summary_json_hook_and_off_switch",)),
    # the table of network figures (result.FIGURES): what a baseline holds and what is gated
    Mutation("later-figure-required", "a baseline written before a figure was added still loads",
             "pytest_ethosu/baseline.py",
             "            if key not in FIRST_TOTALS:  # a figure added later: compared from the next --ethosu-update on\n"
             "                continue\n", "",
             ("tests/test_rules.py::test_a_baseline_from_before_a_figure_existed_compares_on_what_it_has",
              "tests/test_examples.py::test_example_session_passes_with_the_seed_figures")),
    Mutation("flash-not-gated", "the flash the model takes is gated like SRAM",
             "pytest_ethosu/result.py", '    Figure("off_chip_flash_used"),\n',
             '    Figure("off_chip_flash_used", gated=False),\n',
             ("tests/test_rules.py::test_flash_growth_fails_on_the_flash_figure",)),
    Mutation("unrecorded-figures-silent", "the summary says once that baselines lack figures recorded since",
             "pytest_ethosu/report.py", "    if older and not summary.update:", "    if False:",
             ("tests/test_gate.py::test_a_baseline_from_before_the_flash_figures_passes_and_says_so_once",)),
    Mutation("named-figure-ignored", "a recorded figure is gated when tolerances= names it",
             "pytest_ethosu/compare.py",
             "    for metric in (*GATED_TOTALS, *(m for m in NAMED_TOTALS if m in tolerances.per_metric)):",
             "    for metric in GATED_TOTALS:",
             ("tests/test_rules.py::test_recorded_figures_are_gated_when_a_tolerance_names_them",)),
    Mutation("access-cycles-gated-by-default", "work that moves between memory areas while inference gets faster passes",
             "pytest_ethosu/result.py", '    Figure("sram_access_cycles", gated=False),\n',
             '    Figure("sram_access_cycles"),\n',
             ("tests/test_rules.py::test_faster_with_more_sram_access_passes_unless_access_is_named",)),
    Mutation("headline-without-total", "a failure on another figure also states the total cycles' change",
             "pytest_ethosu/report.py", "    if total is not None and worst is not total:", "    if False:",
             ("tests/test_rules.py::test_faster_with_more_sram_access_passes_unless_access_is_named",)),
    Mutation("traffic-areas-swapped", "the bytes moved per memory area are Vela's, each in its place",
             "pytest_ethosu/vela/__init__.py",
             '    "sram_traffic": ("sram_total_bytes", 1),\n    "dram_traffic": ("dram_total_bytes", 1),',
             '    "sram_traffic": ("dram_total_bytes", 1),\n    "dram_traffic": ("sram_total_bytes", 1),',
             ("tests/test_parity.py::test_figures_equal_the_vela_command",)),
    Mutation("flash-off-by-kib", "flash use is Vela's, in bytes",
             "pytest_ethosu/vela/__init__.py", '    "off_chip_flash_used": ("off_chip_flash_memory_used", 1024),',
             '    "off_chip_flash_used": ("off_chip_flash_memory_used", 1000),',
             ("tests/test_parity.py::test_figures_equal_the_vela_command",)),
    # records and the reports drawn from them
    Mutation("detail-without-comparison", "the HTML report and merge show a merged estimate's baseline and changes",
             "pytest_ethosu/record.py",
             '                   None if data["comparison"] is None else Comparison.from_json(data["comparison"]))',
             "                   None)",
             ("tests/test_html.py::test_three_shards_merge_to_the_unsplit_session",
              "tests/test_html.py::test_regression_comes_first_with_its_layer")),
    Mutation("merge-takes-unreadable-entries", "merge refuses an entry that does not read as an estimate, naming it",
             "pytest_ethosu/merge.py", "        if layer[\"placement\"] not in PLACEMENTS:", "        if False:",
             ("tests/test_output.py::test_merge_refuses_a_malformed_entry_before_writing",)),
    # Vela's summary, read as Vela wrote it (tests/test_parity.py against the vela command)
    Mutation("sram-dram-swapped", "SRAM and DRAM use are Vela's, each in its place",
             "pytest_ethosu/vela/__init__.py",
             '    "sram_used": ("sram_memory_used", 1024),\n    "dram_used": ("dram_memory_used", 1024),',
             '    "sram_used": ("dram_memory_used", 1024),\n    "dram_used": ("sram_memory_used", 1024),',
             ("tests/test_parity.py::test_figures_equal_the_vela_command",)),
    Mutation("access-cycles-swapped", "each memory area's access cycles are Vela's, each in its place",
             "pytest_ethosu/vela/__init__.py",
             '    "sram_access_cycles": ("cycles_sram_access", 1),\n    "dram_access_cycles": ("cycles_dram_access", 1),',
             '    "sram_access_cycles": ("cycles_dram_access", 1),\n    "dram_access_cycles": ("cycles_sram_access", 1),',
             ("tests/test_parity.py::test_figures_equal_the_vela_command",)),
    # PyTorch models (tests/test_pytorch.py; needs the PyTorch stack, a few minutes each)
    Mutation("pytorch-cpu-count", "operators ExecuTorch leaves to the CPU are counted",
             "pytest_ethosu/pytorch.py", "cpu_ops=len(lowered.cpu_ops), ", "cpu_ops=0, ",
             ("tests/test_pytorch.py::test_cpu_fallback_fails_naming_the_operator",)),
    Mutation("pytorch-cpu-layers-dropped", "operators left to the CPU are listed as CPU layers where they run",
             "pytest_ethosu/pytorch.py", "        add_cpu(number + 1)\n", "",
             ("tests/test_pytorch.py::test_cpu_fallback_fails_naming_the_operator",)),
    Mutation("pytorch-no-module-path", "a PyTorch model's layers name their module",
             "pytest_ethosu/pytorch.py", 'module=origin.module if origin else ""', 'module=""',
             ("tests/test_pytorch.py::test_wider_layer_fails_by_module_path_update_accepts",)),
    Mutation("pytorch-no-source-line", "a PyTorch model's layers name the user's source line",
             "pytest_ethosu/pytorch.py", 'source=origin.source if origin else ""', 'source=""',
             ("tests/test_pytorch.py::test_wider_layer_fails_by_module_path_update_accepts",)),
    Mutation("pytorch-key-without-program", "the lowering cache key covers the exported program",
             "pytest_ethosu/pytorch.py", "key = lowering_key(program_key, batches",
             'key = lowering_key("", batches',
             ("tests/test_pytorch.py::test_wider_layer_fails_by_module_path_update_accepts",)),
    Mutation("paths-from-cwd", "every relative path option is taken from the rootdir",
             "pytest_ethosu/options.py", "        return path if path.is_absolute() else config.rootpath / path",
             "        return path if path.is_absolute() else Path.cwd() / path",
             ("tests/test_option_table.py::test_report_paths_are_relative_to_the_rootdir_from_a_subdirectory",)),
    Mutation("toml-numbers-refused", "pytest 9's native TOML numbers are taken for number ini keys",
             "pytest_ethosu/options.py", "    return str | float if version >= (9, 2) else None",
             "    return None", ("tests/test_option_table.py::test_native_toml_numbers_are_taken",)),
    Mutation("two-words-html-silent", "every path flag given as two words is flagged",
             "pytest_ethosu/options.py", '        return self.kind in ("path", "file")',
             '        return self.kind == "file" or self.name == "json"',
             ("tests/test_option_table.py::test_every_path_flag_written_as_two_words_is_flagged",)),
    Mutation("dropped-items-ignored", "items a plugin drops without pytest_deselected make their file partial",
             "pytest_ethosu/session.py",
             '        self.collection.partial.update(nodeid.partition("::")[0] for nodeid in dropped)',
             "        pass", ("tests/test_scope.py::test_a_selection_never_deletes_a_baseline",)),
    Mutation("matrix-subset-deletes", "one accelerator of the matrix keeps the others' baselines",
             "pytest_ethosu/unused.py", "            elif collection.other_accelerator(owner):",
             "            elif False:", ("tests/test_scope.py::test_one_accelerator_of_the_matrix_keeps_the_others",)),
    Mutation("hashed-equals-kept", "a kept name never equals a hashed one",
             "pytest_ethosu/baseline.py", "    return f\"{clean[:_MAX_COMPONENT - 11] or '_'}~{digest}\"",
             "    return f\"{clean[:_MAX_COMPONENT - 11] or '_'}-{digest}\"",
             ("tests/test_units.py::test_names_like_a_hashed_form_get_their_own_file",)),
    Mutation("other-tests-legacy-used", "another test's 0.1 file at this test's path is never used or overwritten",
             "pytest_ethosu/check.py", "    if stored is not None and legacy is None:", "    if False:",
             ("tests/test_scope.py::test_another_tests_0_1_file_at_this_tests_path_is_neither_used_nor_lost",)),
    Mutation("late-check-lost", "a check after its test ended is refused, never silently unrecorded",
             "pytest_ethosu/fixture.py", "        if self._state.finished:", "        if False:",
             ("tests/test_scope.py::test_a_check_after_its_test_ended_is_refused",)),
    Mutation("baseline-target-unchecked", "a baseline's target of the wrong types is refused, naming the file",
             "pytest_ethosu/baseline.py",
             '    _check_object(path, "estimator.target", document["estimator"]["target"], _TARGET, fix, required=False)\n',
             "", ("tests/test_units.py::test_a_malformed_baseline_is_refused_naming_the_file",
                  "tests/test_gate.py::test_corrupt_baseline_is_reported_and_kept")),
    Mutation("baseline-negative-figures", "a baseline's negative figures are refused, naming the file",
             "pytest_ethosu/baseline.py", " or not math.isfinite(value) or value < 0:", " or not math.isfinite(value):",
             ("tests/test_units.py::test_a_malformed_baseline_is_refused_naming_the_file",
              "tests/test_gate.py::test_corrupt_baseline_is_reported_and_kept")),
    Mutation("baseline-through-link", "baselines are read and written only inside the baseline directory",
             "pytest_ethosu/check.py", "    baseline.check_place(path, root, context.relative)\n", "",
             ("tests/test_gate.py::test_baselines_stay_inside_the_baseline_directory",)),
    Mutation("precompiled-warning-first", "under -W error a precompiled model still fails as a ModelError",
             "pytest_ethosu/fixture.py", "        if check and result.precompiled:", "        if False:",
             ("tests/test_first_week.py::test_a_precompiled_model_is_refused_by_a_check",)),
    Mutation("cache-ignores-code", "a changed advice rule or parser never reads an entry an older one wrote",
             "pytest_ethosu/cache.py", '                          "code": code_digest(_PACKAGE)}', "}",
             ("tests/test_cache.py::test_key_covers_the_plugin_and_vela_versions",)),
    Mutation("pytorch-identity-is-lowering-key", "a PyTorch model's identity is its exported program, not the lowering",
             "pytest_ethosu/pytorch.py", "model_sha256=lowered.program,", "model_sha256=lowered.key,",
             ("tests/test_pytorch.py::test_xdist_pt2_calibration_and_prequantised",)),
    Mutation("pytorch-identity-with-paths", "a PyTorch model's identity holds no absolute paths (stack traces)",
             "pytest_ethosu/pytorch.py", "                data = _without_traces(data)\n", "                pass\n",
             ("tests/test_pytorch.py::test_xdist_pt2_calibration_and_prequantised",)),
    Mutation("frameworks-not-drift", "another ExecuTorch release is drift that names it",
             "pytest_ethosu/compare.py", "        if old_f.get(name) != new_f.get(name):", "        if False:",
             ("tests/test_units.py::test_a_framework_release_change_is_drift_that_names_it",)),
    Mutation("unfinished-collection-judged", "a run stopped in collection (usage error, pytest.exit) deletes nothing",
             "pytest_ethosu/unused.py", "    if not collection.complete:\n        return []\n", "",
             ("tests/test_scope.py::test_a_selection_never_deletes_a_baseline[serial-exit in collection]", "tests/test_scope.py::test_a_selection_never_deletes_a_baseline[serial-usage error in collection]")),
    Mutation("setup-only-judged", "--setup-only deletes nothing",
             "pytest_ethosu/session.py", '"setuponly", "setupplan",', '"setupplan",',
             ("tests/test_scope.py::test_a_selection_never_deletes_a_baseline[serial-setup only]",)),
    Mutation("missing-ignore-unprotected", "--ignore of a path not on disk still protects its baselines",
             "pytest_ethosu/session.py", '        for ignored in self.config.getoption("ignore", None) or []:',
             "        for ignored in []:", ("tests/test_scope.py::test_a_selection_never_deletes_a_baseline[serial-ignore a deleted file]",)),
    Mutation("repeat-judged", "pytest-repeat's --count deletes nothing",
             "pytest_ethosu/session.py", "            self.collection.partial.update(self.collection.files)",
             "            pass", ("tests/test_scope.py::test_a_selection_never_deletes_a_baseline[serial-repeat]",)),
    Mutation("plain-run-deletes-matrix", "a run without --ethosu-accelerators keeps the matrix run's baselines",
             "pytest_ethosu/unused.py", '        return (function + (f"[{rest}]" if rest else "")) in self.collected',
             "        return False",
             ("tests/test_scope.py::test_runs_with_and_without_the_accelerator_option_keep_each_others_baselines",)),
    Mutation("link-target-unused", "a baseline read through a link inside baselines/ is used",
             "pytest_ethosu/unused.py", " or os.path.realpath(path) in used:", ":",
             ("tests/test_scope.py::test_a_baseline_read_through_a_link_in_the_baseline_directory_is_used",)),
    Mutation("deep-json-traceback", "JSON no parser reads is a BaselineError naming the file",
             "pytest_ethosu/baseline.py", "    except (ValueError, RecursionError) as exc:  #",
             "    except (KeyError,) as exc:  #",
             ("tests/test_units.py::test_json_no_parser_reads_is_refused_naming_the_file",)),
    Mutation("header-raw", "the report header escapes control characters",
             "pytest_ethosu/session.py", '        return escape.terminal(f"ethosu: Vela', '        return str(f"ethosu: Vela',
             ("tests/test_option_table.py::test_the_report_header_escapes_what_the_options_hold",)),
    Mutation("accelerator-twice", "an accelerator named twice is refused",
             "pytest_ethosu/options.py", "        if twice:  # each would be", "        if False:  # each would be",
             ("tests/test_option_table.py::test_an_accelerator_named_twice_is_refused",)),
    Mutation("hook-values-unchecked", "a hook's value JSON cannot hold is left out, never breaks the reports",
             "pytest_ethosu/session.py", "                json.dumps(value, allow_nan=False)", "                pass",
             ("tests/test_scope.py::test_hooks_that_fail_are_reported_and_change_no_outcome[serial]",)),
    Mutation("result-hook-error-fails-test", "a result hook's error changes no outcome and no baseline",
             "pytest_ethosu/session.py",
             "        except (Exception, pytest.fail.Exception, pytest.skip.Exception, SystemExit) as exc:  # reported;",
             "        except (KeyboardInterrupt,) as exc:  #", ("tests/test_scope.py::test_hooks_that_fail_are_reported_and_change_no_outcome[serial]",)),
    Mutation("row-hook-traceback", "a summary-row hook's error is one line, the summary stands",
             "pytest_ethosu/report.py",
             "            except (Exception, pytest.fail.Exception, pytest.skip.Exception, SystemExit) as exc:\n"
             "                if problems is None:",
             "            except (KeyboardInterrupt,) as exc:\n                if problems is None:", ("tests/test_scope.py::test_hooks_that_fail_are_reported_and_change_no_outcome[serial]",)),
    Mutation("nested-baselines-judged", "a nested second baseline directory is not a deleted file's",
             "pytest_ethosu/unused.py", " and not _names_a_test_on_disk(named, rootdir)", "", ("tests/test_scope.py::test_baselines_another_project_or_directory_keeps_are_not_judged",)),
    Mutation("shared-baselines-judged", "a baseline directory outside the rootdir never loses a missing file's baselines",
             "pytest_ethosu/unused.py", "        if shared or where.is_file()",
             "        if where.is_file()", ("tests/test_scope.py::test_baselines_another_project_or_directory_keeps_are_not_judged",)),
    Mutation("outside-rootdir-traceback", "a test file outside the rootdir is refused in one line",
             "pytest_ethosu/check.py", '    if not nodeid.partition("::")[0]:', "    if False:",
             ("tests/test_scope.py::test_a_test_file_outside_the_rootdir_is_refused_in_one_line",)),
    Mutation("budget-equal-fails", "a figure equal to its budget fits",
             "pytest_ethosu/budget.py", "        return used > self.limit.value and not math.isclose(used, self.limit.value, rel_tol=1e-9)",
             "        return used >= self.limit.value", ("tests/test_budget.py",)),
    Mutation("budget-time-bitwise", "a time equal to its budget fits, whatever unit the budget was written in",
             "pytest_ethosu/budget.py", "        return used > self.limit.value and not math.isclose(used, self.limit.value, rel_tol=1e-9)",
             "        return used > self.limit.value", ("tests/test_budget.py",)),
    Mutation("budget-figure-twice", "a figure given twice in one budget text is refused",
             "pytest_ethosu/budget.py", "    if twice:\n        raise BudgetError(", "    if False:\n        raise BudgetError(",
             ("tests/test_budget.py",)),
    Mutation("budget-accepted-by-update", "--ethosu-update does not accept a model over its budget",
             "pytest_ethosu/gate.py", "    if over_budget:\n", "    if over_budget and not update:\n",
             ("tests/test_budget.py",)),
    Mutation("budget-marker-beats-call", "a budget in the call beats the marker's, which beats the session's",
             "pytest_ethosu/fixture.py", 'limits = budgets.merge([budgets.parse(budget, "budget="),',
             'limits = budgets.merge([{},', ("tests/test_budget.py",)),
    Mutation("budget-none-does-not-lift", "budget None in a call or marker lifts a wider budget on that figure",
             "pytest_ethosu/budget.py", "            chosen.setdefault(figure, limit)",
             "            if limit is not None:\n                chosen.setdefault(figure, limit)",
             ("tests/test_budget.py",)),
    Mutation("budget-bare-seconds", "an inference_time budget without a unit is refused",
             "pytest_ethosu/budget.py", '"seconds": {"s": 1,', '"seconds": {"": 1, "s": 1,', ("tests/test_budget.py",)),
    Mutation("budget-kib-as-kb", "KiB is 1024 bytes", "pytest_ethosu/budget.py", '"kib": 1024,', '"kib": 1000,',
             ("tests/test_budget.py",)),
    Mutation("optimised-size-off-by-one", "the optimised model's size is the bytes Vela wrote",
             "pytest_ethosu/vela/engine.py", 'totals["optimised_model_size"] = compiled.stat().st_size',
             'totals["optimised_model_size"] = compiled.stat().st_size + 1', ("tests/test_parity.py",)),
    Mutation("weight-traffic-any-area", "weight traffic is found for flash areas only, with Vela's figures",
             "pytest_ethosu/advisor.py", 'FLASH_AREAS = {"on-chip flash": "on_chip_flash_traffic", "off-chip flash": "off_chip_flash_traffic"}',
             'FLASH_AREAS = {"on-chip flash": "on_chip_flash_traffic", "off-chip flash": "off_chip_flash_traffic", "DRAM": "dram_traffic"}',
             ("tests/test_advisor.py",)),
    Mutation("pytorch-vela-default-system", "a PyTorch model given only an accelerator is estimated on the system "
             "ExecuTorch builds for", "pytest_ethosu/estimator.py",
             "        target = pytorch.lowering_target(target)\n", "",
             ("tests/test_pytorch.py::test_accelerator_alone_gives_what_executorch_builds",)),
    Mutation("reports-not-named", "the terminal names each report it wrote", "pytest_ethosu/session.py",
             '            tr.write_sep("-", f"generated ethosu {what}: {escape.terminal(str(path))}")',
             "            pass", ("tests/test_budget.py::test_budgets_in_the_json_html_and_markdown_reports_and_after_a_merge",)),
    Mutation("annotation-at-decorator", "a GitHub annotation points at the failing call's line",
             "pytest_ethosu/fixture.py", "limits, line=_call_line(self._item)))", "limits, line=None))",
             ("tests/test_reports.py::test_json_of_a_regression_and_github_annotation",)),
    Mutation("lowering-logs-reach-pytest", "what the PyTorch stack logs while lowering stays out of the terminal",
             "pytest_ethosu/pytorch.py", "    for other in others:\n        other.addFilter(not_from_the_stack)\n",
             "    for other in ():\n        other.addFilter(not_from_the_stack)\n",
             ("tests/test_pytorch.py::test_a_first_run_prints_only_the_plugins_lines",)),
    Mutation("lowering-warnings-reach-pytest", "warnings raised while lowering stay out of pytest's warnings summary",
             "pytest_ethosu/pytorch.py", "        with warnings.catch_warnings(record=True) as caught:\n",
             "        with contextlib.nullcontext([]) as caught:\n",
             ("tests/test_pytorch.py::test_a_first_run_prints_only_the_plugins_lines",)),
    Mutation("executorch-root-logs-reach-pytest", "ExecuTorch's records on the root logger stay out of pytest's log capture",
             "pytest_ethosu/pytorch.py", 'f"{os.sep}{package}{os.sep}" in record.pathname for package in STACK_LOGGERS)',
             'False for package in STACK_LOGGERS)',
             ("tests/test_pytorch.py::test_a_first_run_prints_only_the_plugins_lines",)),
    Mutation("stacked-marker-budget-dropped", "stacked markers' budgets merge figure by figure",
             "pytest_ethosu/fixture.py", '*(budgets.parse(b, "the ethosu marker\'s budget=") for b in self._marker_budgets),',
             '*(budgets.parse(b, "the ethosu marker\'s budget=") for b in self._marker_budgets[:1]),',
             ("tests/test_budget.py::test_stacked_markers_merge_their_budgets_figure_by_figure",)),
    Mutation("pytorch-parts-not-told", "a PyTorch module built differently each run is named as such",
             "pytest_ethosu/compare.py", "                  if p in baseline.model_parts and baseline.model_parts[p] != digest)",
             "                  if False)", ("tests/test_pytorch.py::test_a_module_built_differently_each_run_is_named",)),
    Mutation("stacked-marker-tolerances-dropped", "stacked markers' tolerances= merge metric by metric",
             "pytest_ethosu/fixture.py", '"tolerances": tolerances}, *self._markers,',
             '"tolerances": tolerances}, self._marker,',
             ("tests/test_gate.py::test_stacked_markers_merge_their_tolerances_metric_by_metric",)),
    Mutation("budget-not-annotated", "under GitHub Actions a check over budget gets an annotation",
             "pytest_ethosu/report.py", "        if r.status not in FAILED:\n", "        if r.status is not Status.REGRESSED:\n",
             ("tests/test_budget.py::test_a_budget_is_checked_without_a_baseline",)),
)


def copy_repository(target: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def run_tests(copy: Path, tests: tuple[str, ...]) -> int:
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist", *tests]
    # the copy first on the path of every process the tests start (an editable install of the
    # checkout would otherwise answer for pytest_ethosu in subprocesses)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=900, env=env)
    last = done.stdout.strip().splitlines()[-1:] or [""]
    if done.returncode == 0 and "skipped" in last[0]:  # a skip is no pass: the broken code may have raised it
        return 1
    return done.returncode


def main(words: list[str]) -> int:
    if words == ["--list"]:
        for mutation in MUTATIONS:
            print(f"{mutation.name:<28}  {mutation.promise}\n{'':<28}  " + " ".join(mutation.tests))
        return 0
    chosen = [m for m in MUTATIONS if not words or any(w in m.name for w in words)]
    unknown = [w for w in words if not any(w in m.name for m in MUTATIONS)]
    if unknown:
        print(f"no mutation's name contains {', '.join(map(repr, unknown))} (--list shows them)", file=sys.stderr)
        return 2
    rows = []
    unmutated: dict[tuple[str, ...], int] = {}  # each set of tests runs once on the unmutated copy
    with tempfile.TemporaryDirectory(prefix="ethosu-mutate-") as directory:
        copy = Path(directory)
        copy_repository(copy)
        for mutation in chosen:
            path = copy / mutation.path
            original = path.read_text()
            if original.count(mutation.old) != 1:
                rows.append((mutation.name, "NOT APPLIED (the code moved)", mutation.promise))
                continue
            if mutation.tests not in unmutated:
                unmutated[mutation.tests] = run_tests(copy, mutation.tests)
            if unmutated[mutation.tests] != 0:
                rows.append((mutation.name, "TESTS FAIL UNMUTATED", mutation.promise))
                continue
            path.write_text(original.replace(mutation.old, mutation.new))
            started = time.monotonic()
            try:
                code = run_tests(copy, mutation.tests)
            finally:
                path.write_text(original)
            verdict = "killed" if code == 1 else ("SURVIVED" if code == 0 else f"error (exit {code})")
            rows.append((mutation.name, f"{verdict} ({time.monotonic() - started:.0f} s)", mutation.promise))
            print(f"{mutation.name}: {verdict}", flush=True)
    width = max(len(r[0]) for r in rows)
    print()
    for name, verdict, promise in rows:
        print(f"{name:<{width}}  {verdict:<16}  {promise}")
    killed = sum(r[1].startswith("killed") for r in rows)
    print(f"\n{killed} of {len(rows)} mutations killed")
    return 0 if killed == len(rows) else 1

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
