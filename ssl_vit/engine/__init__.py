"""Engine: the loop (trainer), schedules, precision, distributed helpers, atomic I/O, hooks."""
