"""Running a suite: the runner, the tasks, cost measurement (NFE, time, memory), profiling, torchrun, provenance, sample grids, scoring outside samples."""
