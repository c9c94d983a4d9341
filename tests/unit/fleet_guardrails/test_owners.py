"""Owners and protected paths: CODEOWNERS-style matching, last rule wins, protected
folders always flagged, another team's folder flagged, the author's team inferred."""

from __future__ import annotations

import pytest

from fleet.owners import OwnerEntry, OwnersPolicy, flag_paths, infer_team, path_matches

POLICY = OwnersPolicy((
    OwnerEntry("clusters/**", ("@platform",), "policies/owners.yaml", 6),
    OwnerEntry("policies/", ("@platform",), "policies/owners.yaml", 7),
    OwnerEntry("policies/quotas.yaml", ("@platform", "@finops"), "policies/owners.yaml", 8),
    OwnerEntry("workloads/vision-team/", ("@vision-leads",), "policies/owners.yaml", 9),
))


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("clusters/**", "clusters/eu-fra-1.yaml", True),
    ("clusters/**", "workloads/clusters/x.yaml", False),
    ("policies/", "policies/a/b.yaml", True),
    ("/policies/*.yaml", "policies/a/b.yaml", False),
    ("policies/*.yaml", "policies/quotas.yaml", True),
    ("*.yml", "workloads/t/x.yml", True),
    ("workloads/**/gpu-*.yaml", "workloads/t/sub/gpu-1.yaml", True),
    ("workloads/**/gpu-*.yaml", "workloads/gpu-1.yaml", True),
    ("workloads/t?am/", "workloads/team/x.yaml", True),
    ("workloads/nlp-team", "workloads/nlp-team-2/x.yaml", False),
], ids=["double_star", "anchored", "folder", "rooted_single_star", "single_star",
        "name_anywhere", "star_star_middle", "star_star_empty", "question_mark",
        "folder_prefix_is_not_a_lookalike"])
def test_patterns_match_like_codeowners(pattern: str, path: str, matches: bool) -> None:
    assert path_matches(pattern, path) is matches


def test_the_last_matching_rule_wins() -> None:
    entry = POLICY.owners_of("policies/quotas.yaml")
    assert entry is not None and entry.owners == ("@platform", "@finops")
    entry = POLICY.owners_of("policies/residency.yaml")
    assert entry is not None and entry.owners == ("@platform",)


def test_protected_folders_and_other_teams_folders_are_flagged() -> None:
    flags = flag_paths(POLICY, ["workloads/nlp-team/a.yaml", "clusters/eu-fra-1.yaml",
                                "workloads/vision-team/det.yaml", "policies/quotas.yaml"],
                       "nlp-team")
    assert [(f.file, f.kind, f.owners) for f in flags] == [
        ("clusters/eu-fra-1.yaml", "protected", ("@platform",)),
        ("policies/quotas.yaml", "protected", ("@platform", "@finops")),
        ("workloads/vision-team/det.yaml", "other-team", ("@vision-leads",)),
    ]
    assert flags[0].message == ("clusters/ is protected: needs approval from @platform "
                                "(rule 'clusters/**', policies/owners.yaml:6)")
    assert flags[2].message.startswith("changes team vision-team's folder in a change by "
                                       "nlp-team: needs approval from @vision-leads")


def test_a_protected_file_without_owners_still_needs_the_platform_team() -> None:
    flags = flag_paths(OwnersPolicy(), ["clusters/new.yaml"], None)
    assert [(f.kind, f.owners) for f in flags] == [("protected", ())]
    assert "needs approval from the platform team (no rule" in flags[0].message


def test_the_author_team_is_inferred_only_when_one_team_folder_changed() -> None:
    assert infer_team(["workloads/nlp-team/a.yaml", "clusters/x.yaml"]) == "nlp-team"
    assert infer_team(["workloads/nlp-team/a.yaml", "workloads/vision-team/b.yaml"]) is None
    assert infer_team(["policies/x.yaml"]) is None


def test_a_change_to_several_teams_without_an_author_flags_each_team_folder() -> None:
    flags = flag_paths(POLICY, ["workloads/nlp-team/a.yaml", "workloads/vision-team/b.yaml"],
                       None)
    assert [(f.file, f.kind) for f in flags] == [
        ("workloads/nlp-team/a.yaml", "other-team"),
        ("workloads/vision-team/b.yaml", "other-team")]
    assert "touches the folders of 2 teams (nlp-team, vision-team)" in flags[0].message


def test_own_team_files_with_owners_are_listed_but_not_protected() -> None:
    flags = flag_paths(POLICY, ["workloads/vision-team/b.yaml"], "vision-team",
                       {"workloads/vision-team/b.yaml": "fleet/workloads/vision-team/b.yaml"})
    assert [(f.file, f.kind) for f in flags] == [("fleet/workloads/vision-team/b.yaml", "owned")]
