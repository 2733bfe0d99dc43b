"""Recording: loggers (:mod:`trainers.record.loggers`) and rollout recorders."""
