"""Gold tasks: tasks with a known answer, mixed into the queue to measure annotators."""
