"""One job of a planned study, by hand or from a batch scheduler (docs/STUDY.md).

    python -m thyroid.study --plan_only --output_dir=results --run_name=run ...
    python -m thyroid.study.job --run=results/run --list            # index, id, kind, state
    python -m thyroid.study.job --run=results/run --job=fit-9-r0-f2

A job runs once its inputs are committed (done or failed), under a lock of its own (jobs of one
run may run side by side; no study may run there meanwhile), and commits its result as an
executor would. It exits 0 once its result is committed, whatever the job's status (a failed
fit costs its row, as under the executors: the report says so); 1 or 2 when it could not run.
"""

from absl import flags

from thyroid import cli

COMMAND = "study.job"
MAX_CPUS = 1024


def define_flags(fv):
    flags.DEFINE_string("run", None, "The run folder (written by python -m thyroid.study "
                        "--plan_only, or by a study).", flag_values=fv)
    flags.DEFINE_string("job", None, "The id of the job to run (see --list).", flag_values=fv)
    flags.DEFINE_boolean("list", False, "Print the plan's jobs, one a line: index, id, kind and "
                         "state (done, ready, waiting, failed, stale), tab-separated.",
                         flag_values=fv)
    flags.DEFINE_integer("wave", None, "With --list: only the jobs of this wave (a wave's jobs "
                         "need only jobs of earlier waves: one scheduler array per wave).",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_boolean("waves", False, "Print the number of waves of the plan.", flag_values=fv)
    flags.DEFINE_boolean("force", False, "Run the job again although it is done.", flag_values=fv)
    flags.DEFINE_float("cpus_per_job", None, "CPU threads of the job (default: TensorFlow's own "
                       "choice).", lower_bound=0.0, upper_bound=MAX_CPUS, flag_values=fv)


def _plan(fv):
    from thyroid.study.plan import Plan
    if not fv.run:
        raise cli.UsageError("run", fv.run, "name the run folder")
    return Plan.load(fv.run)


def list_lines(plan, wave=None):
    """``index<TAB>id<TAB>kind<TAB>state`` of every job (of one wave), in plan order."""
    from thyroid.study.one_job import job_states, waves
    states, wave_of = job_states(plan), waves(plan)
    return [f"{index}\t{job.id}\t{job.kind}\t{states[job.id]}"
            for index, job in enumerate(plan.jobs) if wave is None or wave_of[job.id] == wave]


def run(fv, args):
    del args
    plan = _plan(fv)
    if fv.list or fv.waves:
        from thyroid.study.one_job import waves
        lines = (list_lines(plan, fv.wave) if fv.list
                 else [str(1 + max(waves(plan).values(), default=-1))])
        print("\n".join(lines))
        return 0
    if not fv.job:
        raise cli.UsageError("job", fv.job, "name a job of the plan (--list shows them)")
    try:
        job = plan.job(fv.job)
    except KeyError:
        raise cli.UsageError("job", fv.job, f"not a job of {plan.run_dir} (--list shows "
                                            "them)") from None
    from thyroid.study.one_job import run_by_hand
    from thyroid.study.resources import JobResources
    resources = JobResources(fv.cpus_per_job) if fv.cpus_per_job else None
    result = run_by_hand(plan, job, force=fv.force, resources=resources)
    print(f"{job.id}: {result.status}" + (f" ({cli.one_line(result.note)})" if result.note
                                          else ""))
    return 0


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
