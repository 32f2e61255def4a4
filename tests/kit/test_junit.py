"""JUnit XML as the reporter reads it (kit/report/crcr_report.py): counts, the failed tests the
relay keeps, and files it refuses to read."""

import pytest

from kit.report.crcr_report import JUnitReader, UnsafeXML, read_junit

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite><testcase name="t"><failure message="&lol3;"/></testcase></testsuite>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<testsuite><testcase name="t"><failure message="&secret;"/></testcase></testsuite>"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["laughs", "xxe"])
def test_a_report_declaring_a_document_type_is_refused_unread(tmp_path, document):
    path = tmp_path / "report.xml"
    path.write_text(document)

    with pytest.raises(UnsafeXML):
        JUnitReader().read(str(path))


def test_at_most_50_failed_tests_are_kept_their_messages_cut_to_500(tmp_path):
    cases = "".join(
        f'<testcase classname="suite" name="t{n}"><failure>{"x" * 600}</failure></testcase>'
        for n in range(60)
    )
    (tmp_path / "a.xml").write_text(f"<testsuite>{cases}</testsuite>")
    (tmp_path / "b.xml").write_text('<testsuite><testcase name="ok"/></testsuite>')

    notes: list[str] = []
    tally = read_junit(f"{tmp_path}/*.xml", notes)

    assert tally is not None
    assert (tally.passed, tally.failed, notes) == (1, 60, [])
    assert len(tally.failures) == 50
    assert tally.failures[0] == {"name": "suite.t0", "message": "x" * 500}


def test_reruns_that_passed_count_as_passed(tmp_path):
    path = tmp_path / "flaky.xml"
    path.write_text(
        '<testsuite><testcase name="flaky"><rerunFailure message="boom"/></testcase>'
        '<testcase name="gone"><skipped/><failure message="after"/></testcase></testsuite>'
    )

    tally = JUnitReader().read(str(path))

    assert tally.counts() == {"passed": 1, "failed": 1, "skipped": 0, "total": 2}
    assert tally.failures == [{"name": "gone", "message": "after"}]


def test_a_file_that_is_not_xml_is_left_out_whole(tmp_path):
    (tmp_path / "good.xml").write_text('<testsuite><testcase name="a"/></testsuite>')
    (tmp_path / "cut.xml").write_text('<testsuite><testcase name="b"/><testcase name=')

    notes: list[str] = []
    tally = read_junit(f"{tmp_path}/good.xml,{tmp_path}/cut.xml", notes)

    assert tally is not None
    assert tally.counts()["total"] == 1
    assert notes == [
        f"failed-tests: {tmp_path}/cut.xml left out: unclosed token: line 1, column 31"
    ]
