"""The job-kind registry, job ids from typed fields, the protocol decided once, and a kind
added in one module (here, in the test) that plans, runs and is reported like the others."""

import dataclasses

import pytest

from thyroid.study import kinds
from thyroid.study.config import CROSS_VALIDATED, StudyConfig, StudyConfigError
from thyroid.study.jobspec import Job, job_id
from thyroid.study.plan import plan_jobs


def test_ids_are_built_from_the_fields():
    assert job_id("data") == "data"
    assert job_id("fit", 9, 0, 2) == "fit-9-r0-f2" == Job("fit", "s", (), 9, 0, 2).id
    assert job_id("fit", 9) == "fit-9" and job_id("variant", variant="band") == "variant-band"


def test_the_protocol_is_decided_once_by_the_settings():
    image = StudyConfig(protocol="image", cv_folds=5)
    assert not image.cross_validated and StudyConfig(quick=True).num_folds == 3
    jobs = plan_jobs(image)
    assert {job.id for job in jobs if job.kind == "fit"} >= {"fit-1", "fit-11"}
    assert not [job for job in jobs if job.kind in ("pooled", "refit", "ensemble")]
    folds = plan_jobs(StudyConfig(quick=True, cv_repeats=2, external=(("csv", "/e.csv"),)))
    ensemble = next(job for job in folds if job.id == "ensemble-11")
    assert [i for i in ensemble.inputs if i.startswith("fit-")] == [
        "fit-11-r0-f0", "fit-11-r0-f1", "fit-11-r0-f2"]  # repeat 0's fold models only


@pytest.mark.parametrize("settings, flag", [
    ({"cv_folds": 0, "rows": (11, 12)}, "--rows=11,12"),
    ({"protocol": "image", "crop_variants": ("band",)}, "--crop_variants=band"),
    ({"cv_folds": 0, "final_model": "folds"}, "--final_model=folds"),
    ({"cv_folds": 0, "external": (("ddti", "/x"),)}, "--external_ddti_dir=/x"),
])
def test_settings_that_need_folds_are_refused_on_a_single_split(settings, flag):
    with pytest.raises(StudyConfigError, match=CROSS_VALIDATED) as error:
        StudyConfig(**settings).validate()
    assert str(error.value).startswith(flag)
    StudyConfig(**{k: v for k, v in settings.items() if k not in ("cv_folds", "protocol")}) \
        .validate()  # the same with folds is fine


def test_every_kind_names_a_runner_and_a_payload():
    from thyroid.study import jobs
    for kind in kinds.KINDS.values():
        assert callable(jobs.runner(kind.name)), kind.name
        assert kind.payload is not None
    with pytest.raises(ValueError, match="no job kind 'nope'"):
        kinds.get("nope")


# A kind added in this one module: it counts the out-of-fold predictions of row 8's fits.
@dataclasses.dataclass(frozen=True)
class ToyPayload:
    images: int
    rows: list


def run_toy(plan, job):
    from thyroid.study.jobs import Outcome
    from thyroid.study.results import read_records
    records = [r for fit in job.inputs for r in read_records(plan.run_dir, fit)]
    return Outcome(ToyPayload(len(records), sorted({r["row_id"] for r in records})))


def plan_toy(study, planned):
    return [Job("toy", "toy", kinds.ids(planned, "fit", 8))]


TOY = kinds.JobKind("toy", f"{__name__}:run_toy", plan_toy, ToyPayload)


@pytest.fixture
def toy_kind():
    kinds.register(TOY, before="pooled")
    yield TOY
    kinds.unregister(TOY.name)


def _listed(run_dir):
    from thyroid.study import job as job_command
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert job_command.main(["job", f"--run={run_dir}", "--list"]) == 0
    return {line.split("\t")[1]: line.split("\t") for line in out.getvalue().splitlines()}


def test_a_kind_registered_in_one_module_is_planned_and_runs_by_hand(quick_study, tmp_path,
                                                                     toy_kind):
    from study_runs import copy_run
    from thyroid.study import job as job_command
    from thyroid.study.plan import Plan
    from thyroid.study.results import read_records, read_result
    _, shared = quick_study
    run_dir = copy_run(shared, tmp_path / "run", train=("08_efficientnet_lite0_bottleneck_svm",))
    before = Plan.load(str(run_dir))
    jobs = plan_jobs(before.study)
    toy = next(job for job in jobs if job.kind == "toy")
    assert toy.inputs == ("fit-8-r0-f0", "fit-8-r0-f1", "fit-8-r0-f2")
    assert [j.id for j in jobs if j.kind != "toy"] == [j.id for j in before.jobs]
    assert "toy" in jobs[-1].inputs  # the report waits for it
    dataclasses.replace(before, jobs=jobs).save()
    listed = _listed(run_dir)
    assert listed["toy"][2:] == ["toy", "ready"] and listed["report"][3] == "stale"
    assert listed["fit-8-r0-f2"][3] == "done" and listed["fit-1-r0-f0"][3] == "stale"
    assert job_command.main(["job", f"--run={run_dir}", "--job=toy"]) == 0
    result = read_result(str(run_dir), "toy")
    expected = sum(len(read_records(str(run_dir), fit)) for fit in toy.inputs)
    assert result.ok and result.payload == ToyPayload(expected, [8]) and expected > 0
    assert _listed(run_dir)["toy"][3] == "done"
