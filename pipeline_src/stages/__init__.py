"""One entry module per stage: ``python -m pipeline_src.stages.<stage> --<name> NAME [paths]``.

A job is named (a dataset, model, attack, table or denoiser) and reads its own section of the run's
parameters (``params.yaml`` in its working directory) by that name; its command line carries names and
paths, never parameter values. Each module declares the parameter keys its jobs read (``keys``): the rules
give Snakemake their values (its params trigger re-runs a job when they change) and dvc.yaml lists them
under ``params:``. A job's code inputs are the modules its entry module imports (pipeline_src/codedeps.py).
"""
