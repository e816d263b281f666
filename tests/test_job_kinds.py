"""The job-kind registry, job ids from typed fields, the protocol decided once, and a kind
added in one module (here, in the test) that plans, runs and is reported like the others."""

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
