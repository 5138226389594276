"""The crash run's verdict (chaos/reconcile.py `judge`) on made-up runs: every kind of damage is flagged.

A checker that has never been seen to fail proves nothing, so each test starts from a clean run
that `judge` passes and plants one fault in it: a lost id, a Deployment written twice, a
deployment no 202 named (of any source), the wrong image running, a success the cluster never
saw, a component with nothing recorded; and for config changes (a `PUT …/config` during the
kills) a lost rollout, one version rolled out twice, an unexplained one and a wrong final config.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from chaos.config_changes import Change
from chaos.load import Webhook
from chaos.provision import Target
from chaos.reconcile import judge

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def target(name: str) -> Target:
    return Target(
        name=name,
        token="lf_ci_unused",
        host="registry.test:5000",
        repository=f"chaos/{name}",
        private=False,
        digests={"v1": DIGEST_A, "v2": DIGEST_B},
    )


def record(
    dep_id: str, component: str, accepted: str, status: str = "succeeded", **extra: Any
) -> dict[str, Any]:
    return {
        "id": dep_id,
        "component": component,
        "status": status,
        "source": "webhook",
        "timings": {"accepted": accepted},
        **extra,
    }


def write(dep_id: str, name: str, *, status: int = 200, method: str = "PATCH") -> dict[str, Any]:
    return {
        "method": method,
        "group": "apps",
        "resource": "deployments",
        "subresource": None,
        "namespace": "default-chaos-development",
        "name": name,
        "deployment_id": dep_id,
        "status": status,
    }


def live(dep_id: str, t: Target, tag: str) -> tuple[int, dict[str, Any]]:
    return 200, {
        "metadata": {"annotations": {"landfall.dev/deployment-id": dep_id}},
        "spec": {"template": {"spec": {"containers": [{"image": t.pinned(tag)}]}}},
    }


def clean_run() -> dict[str, Any]:
    """Two components; c0 got v1 then v2 (v1 superseded before dispatch), c1 got v1 once."""
    c0, c1 = target("c0"), target("c1")
    hooks = [
        Webhook(index=0, target=c0, tag="v1", key="k0", deployment_id="dep_c0_1"),
        Webhook(index=1, target=c1, tag="v1", key="k1", deployment_id="dep_c1_1"),
        Webhook(index=2, target=c0, tag="v2", key="k2", deployment_id="dep_c0_2"),
    ]
    histories = {
        "c0": [
            record("dep_c0_2", "c0", "2026-01-01T00:00:02+00:00"),
            record("dep_c0_1", "c0", "2026-01-01T00:00:00+00:00", status="superseded"),
        ],
        "c1": [record("dep_c1_1", "c1", "2026-01-01T00:00:01+00:00")],
    }
    return {
        "targets": [c0, c1],
        "hooks": hooks,
        "histories": histories,
        "writes": [write("dep_c1_1", "c1"), write("dep_c0_2", "c0")],
        "live": {"c0": live("dep_c0_2", c0, "v2"), "c1": live("dep_c1_1", c1, "v1")},
    }


def test_a_clean_run_passes_with_its_figures() -> None:
    r = judge(**clean_run())
    assert r.ok, r
    assert (r.accepted, r.succeeded, r.superseded, r.deployment_writes) == (3, 2, 1, 2)


def test_an_accepted_id_the_orchestrator_does_not_know_is_lost() -> None:
    run = clean_run()
    run["histories"]["c1"] = []
    r = judge(**run)
    assert [lost["deployment_id"] for lost in r.lost] == ["dep_c1_1"]
    assert r.lost[0]["status"] == "unknown"
    assert not r.ok


def test_an_accepted_deployment_that_failed_is_lost() -> None:
    run = clean_run()
    run["histories"]["c1"][0].update(status="failed", reason="apply_rejected")
    r = judge(**run)
    assert r.lost == [
        {"deployment_id": "dep_c1_1", "component": "c1", "status": "failed", "reason": "apply_rejected"}
    ]


def test_a_deployment_written_twice_is_duplicated_but_a_refused_write_is_not_counted() -> None:
    run = clean_run()
    refused = write("dep_c1_1", "c1", status=409)
    run["writes"] += [refused, write("dep_c1_1", "c1", method="PUT")]
    r = judge(**run)
    assert r.duplicated == {"dep_c1_1": 2}
    assert r.deployment_writes == 3


def test_a_deployment_no_202_named_is_extra_whatever_its_source() -> None:
    for source in ("webhook", "promotion", "cli", "api"):
        run = clean_run()
        invented = record("dep_c1_x", "c1", "2026-01-01T00:00:00+00:00", status="superseded", source=source)
        run["histories"]["c1"].append(invented)
        r = judge(**run)
        assert [e["deployment_id"] for e in r.extra] == ["dep_c1_x"], source
        assert r.extra[0]["source"] == source
        assert not r.ok


def test_a_write_no_record_explains_is_extra() -> None:
    run = clean_run()
    run["writes"].append(write("dep_ghost", "c1"))
    r = judge(**run)
    assert [e["deployment_id"] for e in r.extra] == ["dep_ghost"]


def test_the_wrong_final_image_or_deployment_running_is_flagged() -> None:
    run = clean_run()
    status, body = run["live"]["c0"]
    older_image = copy.deepcopy(body)
    older_image["spec"]["template"]["spec"]["containers"][0]["image"] = run["targets"][0].pinned("v1")
    run["live"]["c0"] = (status, older_image)
    r = judge(**run)
    assert [(w["component"], w["image"]) for w in r.wrong_image] == [("c0", run["targets"][0].pinned("v1"))]

    run = clean_run()
    run["live"]["c0"] = live("dep_c0_1", run["targets"][0], "v2")
    assert [w["running"] for w in judge(**run).wrong_image] == ["dep_c0_1"]

    run = clean_run()
    run["live"]["c1"] = (404, {"kind": "Status"})
    assert judge(**run).wrong_image == [{"component": "c1", "expected": "dep_c1_1", "found": "HTTP 404"}]


def test_a_success_the_cluster_never_saw_written_is_flagged() -> None:
    run = clean_run()
    run["writes"] = [w for w in run["writes"] if w["deployment_id"] != "dep_c1_1"]
    r = judge(**run)
    assert r.succeeded_without_write == ["dep_c1_1"]
    assert not r.ok


def test_a_component_with_nothing_recorded_is_still_checked_against_the_cluster() -> None:
    # The orchestrator lost every record of c1: lost, and its object is still checked against the 202.
    run = clean_run()
    run["histories"]["c1"] = []
    run["live"]["c1"] = live("dep_c1_1", run["targets"][1], "v2")
    r = judge(**run)
    assert [lost["deployment_id"] for lost in r.lost] == ["dep_c1_1"]
    assert [w["component"] for w in r.wrong_image] == ["c1"]

    # A component no 202 named must run nothing; an object there was deployed unasked.
    run = clean_run()
    c2 = target("c2")
    run["targets"].append(c2)
    run["live"]["c2"] = live("dep_c2_1", c2, "v1")
    r = judge(**run)
    assert [w["component"] for w in r.wrong_image] == ["c2"]
    run["live"]["c2"] = (404, {"kind": "Status"})
    assert judge(**run).ok


def test_one_webhook_answered_with_another_ones_id_is_merged_and_a_refused_one_gave_up() -> None:
    run = clean_run()
    c1 = run["targets"][1]
    run["hooks"].append(Webhook(index=3, target=c1, tag="v1", key="k3", deployment_id="dep_c1_1"))
    run["hooks"].append(Webhook(index=4, target=c1, tag="v1", key="k4", gave_up="HTTP 400"))
    r = judge(**run)
    assert r.merged == [{"deployment_id": "dep_c1_1", "webhooks": [1, 3]}]
    assert r.gave_up == [{"webhook": 4, "component": "c1", "why": "HTTP 400"}]


def configured_run() -> dict[str, Any]:
    """The clean run, then c1's config changed twice (v1 of it ran, then v2 the data plane runs):
    replicas 3, env MODE=b, one secret API_KEY; the second PUT was retried once unanswered."""
    run = clean_run()
    change = Change(
        component="c1",
        answered=[
            {"version": 1, "deployment_id": "dep_c1_cfg1"},
            {"version": 3, "deployment_id": "dep_c1_cfg3"},
        ],
        unanswered=1,
        replicas=3,
        env={"MODE": "b"},
        secrets={"API_KEY": "cfg-the-value"},
    )
    run["histories"]["c1"][:0] = [
        record("dep_c1_cfg3", "c1", "2026-01-01T00:00:05+00:00", source="config", config_version=3),
        record(
            "dep_c1_cfg2", "c1", "2026-01-01T00:00:04+00:00", "superseded", source="config", config_version=2
        ),
        record(
            "dep_c1_cfg1", "c1", "2026-01-01T00:00:03+00:00", "superseded", source="config", config_version=1
        ),
    ]
    for dep in run["histories"]["c1"]:
        dep["image"] = "registry.test:5000/chaos/c1:v1"
    run["writes"].append(write("dep_c1_cfg3", "c1"))
    status, body = live("dep_c1_cfg3", run["targets"][1], "v1")
    body["spec"]["replicas"] = 3
    body["spec"]["template"]["metadata"] = {"annotations": {"landfall.dev/config-version": "3"}}
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "PORT", "value": "8080"}, {"name": "MODE", "value": "b"}]
    container["envFrom"] = [{"secretRef": {"name": "c1-env"}}]
    run["live"]["c1"] = (status, body)
    run["changes"] = [change]
    run["env_secrets"] = {"c1": (200, {"data": {"API_KEY": base64.b64encode(b"cfg-the-value").decode()}})}
    return run


def test_config_deployments_the_driver_made_are_explained_and_their_image_must_run() -> None:
    r = judge(**configured_run())
    assert r.ok, r
    assert r.config_changes == 2

    # the config rollout is the newest: the image it rolled out again is what must run
    run = configured_run()
    run["live"]["c1"][1]["spec"]["template"]["spec"]["containers"][0]["image"] = run["targets"][1].pinned(
        "v2"
    )
    assert [w["component"] for w in judge(**run).wrong_image] == ["c1"]


def test_a_config_rollout_that_an_answer_named_and_that_did_not_succeed_is_lost() -> None:
    run = configured_run()
    run["histories"]["c1"] = [d for d in run["histories"]["c1"] if d["id"] != "dep_c1_cfg1"]
    r = judge(**run)
    assert r.config_lost == [
        {"deployment_id": "dep_c1_cfg1", "component": "c1", "version": 1, "status": "unknown", "reason": None}
    ]
    assert not r.ok

    run = configured_run()
    run["histories"]["c1"][0].update(status="failed", reason="config_secrets_missing")
    assert [lost["status"] for lost in judge(**run).config_lost] == ["failed"]


def test_one_config_version_rolled_out_twice_is_doubled_and_an_unasked_one_is_extra() -> None:
    run = configured_run()
    twice = record("dep_c1_cfg1b", "c1", "2026-01-01T00:00:03+00:00", "superseded", source="config")
    run["histories"]["c1"].append({**twice, "config_version": 1, "image": "registry.test:5000/chaos/c1:v1"})
    r = judge(**run)
    assert r.config_doubled == [
        {"component": "c1", "version": 1, "deployments": ["dep_c1_cfg1", "dep_c1_cfg1b"]}
    ]
    assert [e["deployment_id"] for e in r.extra] == ["dep_c1_cfg1b"]
    assert not r.ok

    # without the unanswered attempt nothing explains version 2's rollout
    run = configured_run()
    run["changes"][0].unanswered = 0
    assert [e["deployment_id"] for e in judge(**run).extra] == ["dep_c1_cfg2"]


def test_a_final_config_other_than_the_last_one_set_is_flagged_without_a_secret_value() -> None:
    def found(run: dict[str, Any]) -> dict[str, Any]:
        (wrong,) = judge(**run).wrong_config
        assert "cfg-the-value" not in repr(wrong)
        return dict(wrong["found"])

    run = configured_run()
    run["live"]["c1"][1]["spec"]["replicas"] = 1
    assert found(run) == {"replicas": 1}

    run = configured_run()
    run["live"]["c1"][1]["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = "a"
    assert found(run) == {"env": {"MODE": "a"}}

    run = configured_run()
    run["live"]["c1"][1]["spec"]["template"]["metadata"]["annotations"]["landfall.dev/config-version"] = "2"
    assert found(run) == {"config_version": "2"}

    run = configured_run()
    old = base64.b64encode(b"cfg-an-old-value").decode()
    run["env_secrets"]["c1"] = (200, {"data": {"API_KEY": old}})
    assert found(run) == {"secret_names": ["API_KEY"], "secret_values": "differ"}

    run = configured_run()
    run["env_secrets"]["c1"] = (
        200,
        {"data": {"API_KEY": run["env_secrets"]["c1"][1]["data"]["API_KEY"], "GONE": "eA=="}},
    )
    assert found(run) == {"secret_names": ["API_KEY", "GONE"]}

    run = configured_run()
    run["env_secrets"]["c1"] = (404, {"kind": "Status"})
    run["live"]["c1"][1]["spec"]["template"]["spec"]["containers"][0]["envFrom"] = []
    assert found(run) == {"secret_names": [], "envFrom": []}


def test_a_version_whose_rollout_a_crash_lost_is_flagged_as_the_wrong_final_config() -> None:
    """The PUT stored version 4 and died before its rollout; the retry answered "unchanged" (no
    deployment_id), and the data plane still runs version 3."""
    run = configured_run()
    change = run["changes"][0]
    change.answered.append({"version": 4, "deployment_id": None})
    change.unanswered += 1
    (wrong,) = judge(**run).wrong_config
    assert wrong["found"] == {"config_version": "3"}
    assert wrong["expected"]["config_version"] == 4


def with_webhook_around_the_last_config_rollout(*, image_tag: str, recorded_after: bool) -> dict[str, Any]:
    """configured_run, plus c1's webhook dep_c1_2 accepted just before the last config PUT (cfg3):
    recorded before cfg3 (and superseded by it), or recorded after it (superseding it)."""
    run = configured_run()
    c1 = run["targets"][1]
    run["hooks"].append(Webhook(index=5, target=c1, tag=image_tag, key="k5", deployment_id="dep_c1_2"))
    history = run["histories"]["c1"]
    webhook = record("dep_c1_2", "c1", "2026-01-01T00:00:04.500000+00:00", config_version=3)
    webhook["image"] = f"registry.test:5000/chaos/c1:{image_tag}"
    if recorded_after:
        history[0].update(status="superseded", detail="superseded by dep_c1_2")
        history.insert(0, webhook)
        run["writes"].append(write("dep_c1_2", "c1"))
        _, body = run["live"]["c1"]
        body["metadata"]["annotations"]["landfall.dev/deployment-id"] = "dep_c1_2"
        body["spec"]["template"]["spec"]["containers"][0]["image"] = c1.pinned(image_tag)
    else:
        webhook.update(status="superseded", detail="superseded by dep_c1_cfg3")
        history.insert(1, webhook)
    return run


def test_a_webhook_superseded_by_a_config_rollout_of_an_older_image_is_lost() -> None:
    # the PUT read what ran (v1) before the webhook (v2) was recorded, then rolled v1 out over it
    r = judge(**with_webhook_around_the_last_config_rollout(image_tag="v2", recorded_after=False))
    assert [(lost["deployment_id"], lost["by"]) for lost in r.lost] == [("dep_c1_2", "dep_c1_cfg3")]
    assert not r.ok
    # a rollout of the same image as the one it superseded is what a config change does
    assert judge(**with_webhook_around_the_last_config_rollout(image_tag="v1", recorded_after=False)).ok

    # a config rollout of another image over another config rollout loses that one's image
    run = configured_run()
    cfg2 = run["histories"]["c1"][1]
    cfg2.update(image="registry.test:5000/chaos/c1:v2", detail="superseded by dep_c1_cfg3")
    assert [(lost["deployment_id"], lost["by"]) for lost in judge(**run).config_lost] == [
        ("dep_c1_cfg2", "dep_c1_cfg3")
    ]


def test_a_config_rollout_superseded_by_a_webhook_accepted_before_it_is_not_what_must_run() -> None:
    """The webhook (v2) was accepted before the PUT and recorded after its rollout (of v1): it
    supersedes the rollout and runs with the new config, although the rollout was accepted later."""
    run = with_webhook_around_the_last_config_rollout(image_tag="v2", recorded_after=True)
    r = judge(**run)
    assert r.ok, r
    # what must run is the webhook's image, not the superseded rollout's
    run["live"]["c1"][1]["spec"]["template"]["spec"]["containers"][0]["image"] = run["targets"][1].pinned(
        "v1"
    )
    assert [w["expected"] for w in judge(**run).wrong_image] == ["dep_c1_2"]
