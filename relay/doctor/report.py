"""The onboarding doctor's report on one downstream repo: a list of checks, each pass, warn or
fail with a one-line finding and what to do next. `manage.py crcr_doctor owner/repo` and the
admin's page per allowlisted repo only render it.

What GitHub holds is asked once (relay/doctor/on_github.py), what the relay holds is read from
its own records (relay/doctor/on_record.py), and every check (relay/doctor/checks.py) is a
function of those facts. A GitHub failure (not installed, a 5xx, a timeout, a refusal) is
itself a finding, never an exception: the checks that needed GitHub's answer say they could
not be made.
"""

from dataclasses import dataclass

from allowlist.models import DownstreamRepo
from relay.doctor import checks, on_github
from relay.doctor.findings import Check, State


@dataclass(frozen=True)
class Report:
    repo: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.state is State.FAIL)


def diagnose(repo: str) -> Report:
    """Every check on `repo` (owner/name, any case), in the order of checks.ALL."""
    row = DownstreamRepo.objects.filter(repo__iexact=repo).first()
    facts = checks.Facts(repo, row, on_github.find(repo))
    return Report(repo, tuple(check(facts) for check in checks.ALL))
