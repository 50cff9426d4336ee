"""One step runner for every kind of drill: a failed step is a state, never a text prefix."""
from handlers.drill.result import DrillResult
from handlers.errors import Cancelled
from handlers.report import Check, Verdict
from handlers.verification.steps import Failed, StepFailed, checks_outcome, run_step


def _run(work):
    result = DrillResult(backup_id="b001", target="prod", instance_kind="local", started_at=0.0)
    interrupted = []
    go_on = run_step(result, "verify", work, lambda p: None, lambda text: text.replace("s3cret", "***"),
                     lambda: interrupted.append(True))
    return go_on, result.steps[-1], result, interrupted


def test_a_detail_that_starts_with_failed_is_still_a_passing_step():
    go_on, step, _, _ = _run(lambda: "FAILED: says the text, but the step passed")
    assert go_on and step["outcome"] == "ok" and step["detail"] == "FAILED: says the text, but the step passed"


def test_failed_is_a_state_the_drill_goes_on_after():
    go_on, step, result, _ = _run(lambda: Failed("2 restore errors with s3cret"))
    assert go_on and step["outcome"] == "failed" and step["detail"] == "2 restore errors with ***"
    assert result.error is None


def test_step_failed_stops_the_drill_with_its_message_and_others_name_their_type():
    def broken():
        raise StepFailed("pg_restore cannot read the archive's table of contents")
    go_on, step, result, _ = _run(broken)
    assert not go_on and step["outcome"] == "failed"
    assert result.error == "verify: pg_restore cannot read the archive's table of contents"

    def bug():
        raise KeyError("s3cret")
    go_on, step, _, _ = _run(bug)
    assert not go_on and step["detail"] == "KeyError: '***'"


def test_cancelled_and_ctrl_c_are_cancelled_steps():
    def cancelled():
        raise Cancelled("cancelled while pg_restore ran")
    go_on, step, result, interrupted = _run(cancelled)
    assert not go_on and step["outcome"] == "cancelled" and result.cancelled and not interrupted

    def ctrl_c():
        raise KeyboardInterrupt
    go_on, step, _, interrupted = _run(ctrl_c)
    assert not go_on and step["outcome"] == "cancelled" and interrupted == [True]


def test_checks_outcome_counts_in_words():
    ok, failed, not_run = Check("a", Verdict.OK), Check("b", Verdict.FAILED), Check("c", Verdict.NOT_RUN)
    assert checks_outcome([ok]) == "1 check passed"
    assert checks_outcome([ok, failed]) == Failed("1 of 2 checks failed")
    assert checks_outcome([ok, not_run]) == "1 check passed, 1 not run"


def test_the_summary_counts_all_checks_and_says_which_step_made_them():
    result = DrillResult(backup_id="b001", target="prod", instance_kind="local", started_at=0.0)

    def making(n):
        def work():
            result.checks.extend(Check(f"c{len(result.checks)}", Verdict.OK) for _ in range(n))
            return checks_outcome(result.checks[-n:])
        return work
    for name, n in (("create instance", 0), ("restore", 4), ("verify", 10), ("delete instance", 0)):
        run_step(result, name, making(n) if n else (lambda: "done"), lambda p: None, str, lambda: None)
    assert [s["detail"] for s in result.steps][1:3] == ["4 checks passed", "10 checks passed"]
    assert result.passed and "all 14 checks passed (restore 4, verify 10)" in result.summary


def test_the_outcome_is_an_enum_stored_as_its_text():
    import json

    from handlers.verification.steps import StepOutcome

    _, failed, _, _ = _run(lambda: Failed("1 restore error"))
    _, passed, _, _ = _run(lambda: "FAILED: only text")
    assert failed["outcome"] is StepOutcome.FAILED and passed["outcome"] is StepOutcome.OK
    assert json.loads(json.dumps(failed))["outcome"] == "failed"  # the drill store keeps text
    assert f"{failed['outcome']}" == "failed"
