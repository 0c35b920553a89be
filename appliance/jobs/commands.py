"""`appliance jobs`: long commands run detached from the terminal (what the terminal UI starts), listed, followed,
cancelled and resumed from any shell."""
from __future__ import annotations

import argparse

from appliance import cliutil, jobs


def cmd_jobs_list(args: argparse.Namespace) -> int:
    ws = cliutil.workspace(args)
    rows = [jobs.describe(j) for j in jobs.list_jobs(ws)]

    def human() -> None:
        for r in rows:
            progress = f"{r['stage']} {r['done']}/{r['total'] if r['total'] is not None else '?'}" if r["stage"] else ""
            print(f"{r['job_id']}  {r['state']:<9} {progress:<28} {r['title'][:60]}")
        if not rows:
            print("no jobs (start one with `appliance jobs start -- COMMAND ...` or from `appliance tui`)")

    cliutil.emit(args, rows, human)
    return cliutil.EXIT_OK


def cmd_jobs_start(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    job = jobs.start(cliutil.workspace(args), argv)
    cliutil.emit(args, jobs.describe(job),
                 lambda: print(f"job {job.job_id} started (pid {job.pid}); follow it with "
                               f"`appliance jobs log {job.job_id}`; it goes on if this shell closes"))
    return cliutil.EXIT_OK


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    ws = cliutil.workspace(args)
    job = jobs.get(ws, args.job)
    jobs.cancel(job)
    cliutil.emit(args, jobs.describe(job), lambda: print(f"job {job.job_id}: asked to stop (its run stays resumable)"))
    return cliutil.EXIT_OK


def cmd_jobs_resume(args: argparse.Namespace) -> int:
    ws = cliutil.workspace(args)
    job = jobs.resume(ws, jobs.get(ws, args.job))
    cliutil.emit(args, jobs.describe(job), lambda: print(f"job {job.job_id} started: {job.title}"))
    return cliutil.EXIT_OK


def cmd_jobs_log(args: argparse.Namespace) -> int:
    ws = cliutil.workspace(args)
    job = jobs.get(ws, args.job)
    lines = job.log_tail(args.lines)
    cliutil.emit(args, {"job": jobs.describe(job), "log": lines}, lambda: print("\n".join(lines)))
    return cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("jobs", parents=[common], help="commands run detached from the terminal: list, start, cancel, "
                                                      "resume, log")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    p.set_defaults(func=cmd_jobs_list)
    q = jsub.add_parser("list", parents=[common], help="every job, newest first, with its state and progress")
    q.set_defaults(func=cmd_jobs_list)
    q = jsub.add_parser("start", parents=[common], help="run an appliance command as a job: jobs start -- ladder --quick")
    q.add_argument("argv", nargs=argparse.REMAINDER)
    q.set_defaults(func=cmd_jobs_start)
    for name, func, text in (("cancel", cmd_jobs_cancel, "stop a running job as Ctrl-C would (resumable)"),
                             ("resume", cmd_jobs_resume, "start a cancelled or killed job again where it stopped"),
                             ("log", cmd_jobs_log, "the end of a job's output")):
        q = jsub.add_parser(name, parents=[common], help=text)
        q.add_argument("job", help="job id (or a unique prefix)")
        if name == "log":
            q.add_argument("-n", "--lines", type=int, default=40)
        q.set_defaults(func=func)
