"""The JSON API against its own OpenAPI schema (schemathesis, every check): each answer is one
the schema documents, with its documented shape and status, never a 5xx (issue 13, item 14).
A bounded run here, on the demo's history; bench/fuzz.py runs a long one."""

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err

from allowlist.models import DownstreamRepo
from sandbox import history

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("CRCR_FUZZ_EXAMPLES", "25"))


def _schema() -> "schemathesis.BaseSchema":
    from crcr_site.wsgi import application  # (the schema view reads no database)

    return schemathesis.openapi.from_wsgi("/api/crcr/schema", application)


schema = _schema()


@pytest.fixture
def demo_data(db):
    for repo, level, device in (("org/alpha", "L2", ""), ("org/beta", "L3", "npu")):
        DownstreamRepo.objects.create(repo=repo, level=level, device=device)
    history.load(days=3, prs=4)


# One test per operation, named by it: schemathesis's own parametrize gives every operation
# the same test id, and pytest-xdist (make test) ran one of them and dropped the rest.
def _operation(result: Any) -> Any:
    if isinstance(result, Err):
        raise result.err()  # a schema that does not load fails the collection, loudly
    return result.ok()


OPERATIONS = [_operation(result) for result in schema.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_every_answer_is_one_the_schema_documents(demo_data, operation):
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    def answers_as_documented(case):
        case.call_and_validate()

    answers_as_documented()
