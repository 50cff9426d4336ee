"""Report.to_dict / from_dict: what an approval request stores comes back whole."""
import json

from handlers.report import Outcome, Report, Section, Table


def test_a_report_survives_a_trip_through_json():
    report = Report("Migration r012", "2 forbidden, 1 warning", Outcome.APPROVAL_REQUIRED,
                    sections=[Section("Findings", table=Table(["rule", "line"], [["drop-column", 3]])),
                              Section("Notes", "text only")],
                    data={"forbidden": 2}, exact_json={"fixed": True})
    back = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report and back.outcome is Outcome.APPROVAL_REQUIRED
