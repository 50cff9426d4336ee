"""Report.to_dict / from_dict: what an approval request stores comes back whole."""
import json

from handlers.report import Level, Note, Outcome, Report, Section, Table


def test_a_report_survives_a_trip_through_json():
    report = Report("Migration r012", "2 forbidden, 1 warning", Outcome.APPROVAL_REQUIRED,
                    sections=[Section("Findings", table=Table(["rule", "line"], [["drop-column", 3]])),
                              Section("Notes", "text only")],
                    data={"forbidden": 2}, exact_json={"fixed": True})
    back = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report and back.outcome is Outcome.APPROVAL_REQUIRED


DROP = {"code": "drop-column", "severity": "forbidden", "line": 3, "statement": "ALTER TABLE t DROP COLUMN c;",
        "message": "drops t.c, which holds data", "hint": "expand/contract"}
PIN = {**DROP, "code": "lock", "severity": "warning", "line": 1, "message": "locks t", "hint": ""}


def test_findings_are_typed_parts_that_survive_a_trip_through_json():
    from bot.core import output

    report = Report("Migration check: a.sql", "a.sql: 1 forbidden", Outcome.APPROVAL_REQUIRED,
                    sections=[Section("Forbidden", findings=[DROP], problem=True), Section("Warnings", findings=[PIN]),
                              Section("Rows", table=Table(["line", "code", "message", "fix"], [[9, "x", "y", "z"]]))],
                    findings=[PIN, DROP])
    back = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report and [s.findings for s in back.sections] == [[DROP], [PIN], None]
    # Recognised by their type, not by their headers: a table with the same headers stays a table.
    text = output.to_text(back, 100)
    assert text.index("warning[lock]") < text.index("forbidden[drop-column]") and "== Forbidden" not in text
    assert "== Rows" in text and output.to_lines(back).startswith("UP.sql:1: warning[lock]: locks t\n")


def test_a_report_stored_before_findings_were_typed_reads_them_back():
    stored = Report("Migration request: a", "1 forbidden", Outcome.APPROVAL_REQUIRED,
                    sections=[Section("Forbidden", findings=[DROP], problem=True), Section("Notes", "text")],
                    findings=[DROP]).to_dict()
    del stored["findings"]
    for section in stored["sections"]:
        del section["findings"]
    stored["data"] = {"findings": [DROP]}
    back = Report.from_dict(stored)
    assert back.findings == [DROP] and back.sections[1].findings is None
    (finding,) = back.sections[0].findings
    assert (finding["line"], finding["code"], finding["hint"]) == (3, "drop-column", "expand/contract")


def test_notes_keep_their_level_and_the_renderer_marks_them():
    from bot.core import output

    report = Report("Render backups of prod", "1 warning", Outcome.FAILED, sections=[
        Section("Warnings", "Render says:", notes=[Note.warning("no PITR"), Note(Level.INFO, "plan: pro")],
                problem=True)])
    back = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report and back.sections[0].notes[0].level is Level.WARNING
    texts = [b["text"]["text"] for m in output.slack_messages(back) for b in m["blocks"] if b["type"] == "section"]
    assert "*Warnings*\nRender says:\n:warning: no PITR\nplan: pro" in texts
    assert "Render says:\nwarning: no PITR\nplan: pro" in output.to_text(back, 100)
    assert json.loads(output.to_json(back))["sections"][0]["text"] == "Render says:\nwarning: no PITR\nplan: pro"
    assert back.sections[0].text == "Render says:"  # rendering wrote into a copy
    # What a job stores (Report.to_json) keeps the notes as data, levels and all.
    assert back.to_json()["sections"][0]["notes"] == [{"level": "warning", "text": "no PITR"},
                                                      {"level": "info", "text": "plan: pro"}]


def test_a_reports_notes_are_written_above_its_summary():
    from bot.core import output

    report = Report("Backups of prod", "3 backups", notes=[Note(Level.INFO, "The state database is unreachable."),
                                                           Note.warning("Storage holds 1 backup the catalog does not")])
    back = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report and back.summary == "3 backups"
    said = "The state database is unreachable.\nwarning: Storage holds 1 backup the catalog does not\n3 backups"
    assert output.to_text(back, 100).startswith(f"Backups of prod: OK\n{said}\n")
    assert json.loads(output.to_json(back))["summary"] == said and "notes" not in json.loads(output.to_json(back))
    assert output.slack_messages(back)[0]["blocks"][1]["text"]["text"] == (
        ":white_check_mark: The state database is unreachable.\n:warning: Storage holds 1 backup the catalog does "
        "not\n3 backups")
