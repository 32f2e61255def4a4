import pytest
import yaml

from allowlist.entry import ALL_EVENTS, Entry, Event, Level
from allowlist.yamlfile import AllowlistError, dump_allowlist, parse_allowlist
from tests.allowlist.support import MALFORMED


def levels(text: str) -> dict[str, str]:
    return {entry.repo: entry.level.value for entry in parse_allowlist(text).entries}


def test_the_upstream_file_parses_to_its_levels_devices_and_oncalls(upstream_allowlist_text):
    parsed = parse_allowlist(upstream_allowlist_text)

    by_level = {
        level: sorted(e.repo for e in parsed.entries if e.level == level) for level in Level
    }
    assert by_level[Level.L1] == sorted(
        [
            "riseproject-dev/pytorch-ci",
            "NVIDIA-dev/pytorch-oot-internal",
            "NVIDIA/pytorch-windows-ci",
            "google-pytorch/torch_tpu",
            "RBLN-SW/torch-rbln",
        ]
    )
    assert by_level[Level.L2] == sorted(
        [
            "TorchedHat/pytorch-redhat-ci",
            "Ascend/pytorch",
            "torch-spyre/torch-spyre",
            "vllm-project/vllm",
        ]
    )
    assert by_level[Level.L4] == []
    crcr_test = parsed.by_key()["pytorch/crcr-test"]
    assert crcr_test == Entry(
        "pytorch/crcr-test",
        Level.L3,
        "crcr-test",
        ("atalman", "can-gaa-hou", "fffrog", "jewelkm89", "KarhouTam", "subinz1"),
        ALL_EVENTS,
    )
    assert parsed.warnings == ()


def test_it_reads_every_entry_form():
    parsed = parse_allowlist("""
L1:
  - plain/repo
L2:
  - comma/string: "a, b ,, c"
  - yaml/list: [a, b]
  - nightly/only:
      events: [nightly]
      oncalls: [n1]
L3:
  npu:
    npu/repo: [x, y]
    pr/only:
      events: [pull_request]
      oncalls: pr-oncall
L4:
  - gate/repo: "g1, g2"
""").by_key()

    assert parsed["plain/repo"] == Entry("plain/repo", Level.L1)
    assert parsed["comma/string"].oncalls == ("a", "b", "c")
    assert parsed["yaml/list"].oncalls == ("a", "b")
    assert parsed["nightly/only"].events == {Event.NIGHTLY}
    assert parsed["nightly/only"].oncalls == ("n1",)
    assert parsed["npu/repo"] == Entry("npu/repo", Level.L3, "npu", ("x", "y"))
    assert parsed["pr/only"] == Entry(
        "pr/only", Level.L3, "npu", ("pr-oncall",), frozenset({Event.PULL_REQUEST})
    )
    assert parsed["gate/repo"].oncalls == ("g1", "g2")


def test_it_accepts_what_pytorchs_relay_accepts():
    # Empty documents, null and empty levels, oncalls given as null, false, a number or with
    # '@' prefixes (kept as written), an empty device mapping.
    assert parse_allowlist("").entries == ()
    assert parse_allowlist("# only a comment\n").entries == ()
    parsed = parse_allowlist("""
L1:
L2: []
L3:
  empty-device: {}
L4:
  - a/none: null
  - a/false: false
  - a/number: 123
  - a/at: "@one, two"
""").by_key()
    assert parsed["a/none"].oncalls == ()
    assert parsed["a/false"].oncalls == ()
    assert parsed["a/number"].oncalls == ("123",)
    assert parsed["a/at"].oncalls == ("@one", "two")


def test_repo_names_lose_surrounding_spaces_and_slashes_but_keep_their_case():
    assert levels("L1:\n  - ' /Org/Repo/ '\n") == {"Org/Repo": "L1"}


def test_unknown_top_level_keys_are_ignored_with_a_warning():
    parsed = parse_allowlist("L1: [a/b]\nL5: [c/d]\nnotes: hello\n")

    assert [e.repo for e in parsed.entries] == ["a/b"]
    assert parsed.warnings == (
        "unknown top-level key 'L5' ignored (levels are L1-L4)",
        "unknown top-level key 'notes' ignored (levels are L1-L4)",
    )


@pytest.mark.parametrize(
    ("text", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_file_is_refused_with_a_message_naming_the_entry(text, message):
    with pytest.raises(AllowlistError) as refused:
        parse_allowlist(text)

    assert message in str(refused.value)


def test_every_problem_in_a_file_is_reported_at_once():
    with pytest.raises(AllowlistError) as refused:
        parse_allowlist("L1: [nope, a/b]\nL2: [a/b]\nL3: []\n")

    assert len(refused.value.problems) == 3


def test_export_round_trips_the_upstream_file(upstream_allowlist_text):
    parsed = parse_allowlist(upstream_allowlist_text)

    assert parse_allowlist(dump_allowlist(parsed.entries)).entries == parsed.entries


def test_export_writes_the_upstream_syntax_only():
    entries = [
        Entry("z/plain", Level.L1),
        Entry("a/oncalls", Level.L2, oncalls=("a", "b")),
        Entry("n/nightly", Level.L2, events=frozenset({Event.NIGHTLY})),
        Entry("d/l3", Level.L3, "npu", ("x",)),
        Entry("e/l3", Level.L3, "npu"),
        Entry("g/gate", Level.L4, oncalls=("g",)),
    ]

    body = dump_allowlist(entries).split("\n\n", 1)[1]

    assert body == (
        "L1:\n- z/plain\n"
        "L2:\n- a/oncalls: a, b\n- n/nightly:\n    events: [nightly]\n"
        "L3:\n  npu:\n    d/l3: [x]\n    e/l3: []\n"
        "L4:\n- g/gate: g\n"
    )


def test_exported_oncalls_read_correctly_the_way_pytorchs_relay_reads_them():
    # PyTorch's relay splits L1/L2/L4 oncalls with str(value).split(",") and iterates L3's list.
    text = dump_allowlist(
        [
            Entry("a/b", Level.L2, oncalls=("x", "y")),
            Entry("c/d", Level.L3, "npu", ("z", "w")),
        ]
    )
    document = yaml.safe_load(text)

    l2_value = document["L2"][0]["a/b"]
    assert [o.strip() for o in str(l2_value).split(",")] == ["x", "y"]
    assert [str(o).strip() for o in document["L3"]["npu"]["c/d"]] == ["z", "w"]
